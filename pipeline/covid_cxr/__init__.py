"""TFDS builder for the upstream data set (import it to register `covid_cxr`)."""

from pipeline.covid_cxr.covid_cxr_dataset_builder import Builder

__all__ = ["Builder"]
