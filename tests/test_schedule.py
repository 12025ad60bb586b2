"""The suite's schedule (tests/conftest.py): the slowest modules are handed to the workers first."""

from types import SimpleNamespace

import pytest

from tests import conftest


def test_the_slowest_modules_come_first_in_their_order_and_the_rest_keep_theirs():
    nodeids = ["tests/a.py::t1", "tests/slow2.py::t", "tests/b.py::t", "tests/slow1.py::t1", "tests/a.py::t2",
               "tests/slow1.py::t2"]
    ordered = conftest.slowest_first([SimpleNamespace(nodeid=n) for n in nodeids],
                                     slowest=("tests/slow1.py", "tests/slow2.py"))
    assert [item.nodeid for item in ordered] == ["tests/slow1.py::t1", "tests/slow1.py::t2", "tests/slow2.py::t",
                                                  "tests/a.py::t1", "tests/b.py::t", "tests/a.py::t2"]


def test_a_listed_module_that_does_not_exist_is_named(monkeypatch):
    monkeypatch.setattr(conftest, "SLOWEST_MODULES", ("tests/components/train/test_resume.py", "tests/gone.py"))
    with pytest.raises(pytest.UsageError, match=r"do not exist: \['tests/gone.py'\]"):
        conftest.pytest_collection_modifyitems(None, [])
