import pytest

from common.errors import PipelineError
from sources import origin


def _row(patient="1", doi="", url="", location=""):
    return {"patientid": patient, "doi": doi, "url": url, "location": location}


@pytest.mark.parametrize("row,source", [
    (_row(doi=" 10.1148/Radiol.2020201160 ", url="https://pubs.rsna.org/x"), "doi:10.1148/radiol.2020201160"),
    (_row(doi="https://doi.org/10.1/ABC"), "doi:10.1/abc"),
    (_row(doi="doi: 10.1/abc"), "doi:10.1/abc"),
    (_row(url="https://radiopaedia.org/cases/covid-19-pneumonia-40/ ", location="Italy"),
     "url:https://radiopaedia.org/cases/covid-19-pneumonia-40"),
    (_row(location=" Hannover Medical School,  Hannover, Germany"), "location:Hannover Medical School, Hannover, Germany"),
])
def test_a_source_is_the_doi_else_the_url_else_the_location(row, source):
    assert origin.source_of(row) == source


def test_a_row_without_doi_url_or_location_is_named():
    with pytest.raises(PipelineError, match="patient '7': no doi, url or location"):
        origin.source_of(_row(patient="7"))


def test_one_patient_makes_a_case_report_two_a_series_counted_over_every_row_given():
    rows = [_row("1", doi="10.1/a"), _row("1", doi="10.1/A"), _row("2", doi="10.1/b"), _row("3", doi="10.1/b"),
            _row("4", url="https://x/case")]
    assert origin.source_types(rows) == {"doi:10.1/a": origin.CASE_REPORT, "doi:10.1/b": origin.SERIES,
                                         "url:https://x/case": origin.CASE_REPORT}


@pytest.mark.parametrize("location,site", [
    ("Hannover Medical School, Hannover, Germany", "Germany"), ("Italy", "Italy"), ("United Kingdom ", "United Kingdom"),
    ("Hong  Kong", "Hong Kong"), ("", "unknown"), ("  ", "unknown"), ("Wuhan, ", "unknown"),
])
def test_a_site_is_the_last_token_of_the_location(location, site):
    assert origin.site_of(location) == site


def test_small_sites_are_pooled_but_unknown_stays_apart():
    sites = {f"g{i}": "Germany" for i in range(5)} | {"s1": "Spain", "s2": "Spain", "u1": "unknown"}
    counted = [*sites, "g0"]  # a patient counted twice is still one
    pooled = origin.pooled_sites(sites, counted, min_patients=5)
    assert {pooled[p] for p in sites if p.startswith("g")} == {"Germany"}
    assert pooled["s1"] == pooled["s2"] == origin.OTHER_SITES and pooled["u1"] == "unknown"
    assert origin.pooled_sites(sites, ["g0"], min_patients=5)["g1"] == origin.OTHER_SITES  # counted patients only


def test_a_patient_takes_the_first_rows_value_and_is_flagged_when_rows_disagree():
    rows = [_row("1", location="Italy"), _row("2", location="Spain"), _row("1", location="Germany")]
    first, several = origin.first_by_patient(rows, lambda row: origin.site_of(row["location"]))
    assert first == {"1": "Italy", "2": "Spain"} and several == {"1"}
