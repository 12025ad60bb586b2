"""The package name under which the project's Keras layers are registered for `.keras` files."""

SERIALIZATION_PACKAGE = "covid_mortality"
