"""The dataset catalog."""

import pytest

from harness.data.catalog import GROUPS, expand, get_dataset, members
from harness.errors import HarnessError


def test_beir_has_18_datasets_and_14_public():
    assert len(GROUPS["beir"]) == 18 and len(GROUPS["beir-public"]) == 14
    assert "msmarco" not in GROUPS["beir"]
    assert {"bioasq", "signal1m", "trec-news", "robust04"} == set(GROUPS["beir"]) - set(GROUPS["beir-public"])


def test_cqadupstack_is_12_forums_scored_separately():
    forums = members("cqadupstack")
    assert len(forums) == 12 and forums[0] == "cqadupstack/android"
    assert get_dataset("cqadupstack/tex").subsets == ()


def test_remove_query_for_arguana_and_quora_only():
    assert {n for n in GROUPS["beir"] if get_dataset(n).remove_query} == {"arguana", "quora"}


def test_unknown_dataset_names_close_matches():
    with pytest.raises(HarnessError, match="Did you mean 'scifact'"):
        get_dataset("scifakt")
    with pytest.raises(HarnessError, match="no subset"):
        get_dataset("cqadupstack/androids")


def test_expand_groups_without_duplicates():
    assert expand(["scifact", "beir-public", "scifact"])[0] == "scifact"
    assert len(expand(["beir", "beir-public"])) == 18
