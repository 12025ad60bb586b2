"""The study's outcome-adjacent clinical flags: the columns every data source gives and the imputation forest
reads. They label (imputation) but are never model inputs. Kept apart from the forest so that ingest's cache
key, which follows the sources' imports, does not follow the forest's code."""

FLAG_COLUMNS = ("went_icu", "needed_supplemental_O2", "intubation_present", "extubated")
