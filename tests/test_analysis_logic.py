"""The Analysis page's handlers without a browser, over real SQLite databases."""

from asclepius_ui.storage import open_storage
from asclepius_ui.ui.analysis_logic import ALL, NO_RATINGS, refresh

from .test_eval_report import build_ratings_db


def test_empty_database_says_so_and_shows_no_tables(tmp_path):
    show, (status, means, *_rest) = refresh(open_storage(f"sqlite:///{tmp_path / 'r.db'}"), ALL, 1000, None)
    assert not show and status == NO_RATINGS and means is None


def test_ratings_compute_and_a_bad_bootstrap_count_is_a_message(tmp_path):
    storage = open_storage(build_ratings_db(tmp_path))
    show, (status, means, *_rest) = refresh(storage, ALL, 200, None)
    assert show and status.startswith("Computed from") and "Expert ratings (studies)" in means.to_string()
    show, (status, *_rest) = refresh(storage, ALL, float("nan"), None)
    assert not show and "error-box" in status
