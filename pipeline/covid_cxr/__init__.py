"""TFDS builders for the upstream data set (import it to register `covid_cxr` and `covid_cxr_beam`)."""

from pipeline.covid_cxr.covid_cxr_dataset_builder import Builder, CovidCxrBeam

__all__ = ["Builder", "CovidCxrBeam"]
