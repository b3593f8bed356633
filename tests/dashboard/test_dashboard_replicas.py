"""The dashboard live across replicas, in a real browser (issue 11): two ``troth serve`` replicas on one
PostgreSQL, the review worker connected to replica B, the workflow started and approved through B, and
the page open on replica A — which sees the workflow appear on its overview and its tree grow and finish
without a reload, though no step is taken through A. (The change feed itself, over HTTP:
``tests/postgres/test_dashboard_replicas.py``.)"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from postgres.replicas import Replicas
from stores import new_database, require_postgres

from .conftest import Worker, shot, start_review


@pytest.fixture
def replicas() -> Iterator[Replicas]:
    require_postgres()
    with Replicas(2, new_database()) as pair:
        yield pair


def test_a_page_on_replica_a_follows_a_workflow_run_through_replica_b(page: Page, replicas: Replicas) -> None:
    a, b = replicas[0], replicas[1]
    worker = Worker(b.url)
    try:
        page.goto(f"{a.url}/ui")
        expect(page.locator("#content")).to_have_attribute("data-feed-state", "open")
        start_review(b, "order-ab", "o-ab")
        link = page.get_by_role("link", name="order-ab", exact=True)
        expect(link).to_be_visible()  # A's overview heard of it from B
        link.click()
        expect(page).to_have_url(re.compile(r"/ui/promise\?id=order-ab$"))
        tree = page.locator("#tree")
        expect(tree.locator('tr[data-id="order-ab:2"]')).to_have_attribute("data-state", "pending")
        expect(tree.locator('tr[data-id="order-ab:1"]')).to_have_attribute("data-state", "resolved")
        # approved through B (another client of the cluster), not through this page
        status, body = b.post(
            "promise.settle",
            {"id": "order-ab:2", "state": "resolved", "value": {"data": "InllcyI="}},  # "yes"
        )
        assert status == 200, body
        expect(tree.locator('tr[data-id="order-ab:3"]')).to_have_attribute("data-state", "resolved")
        expect(tree.locator('tr[data-id="order-ab"]')).to_have_attribute("data-state", "resolved")
        shot(page, "workflow-across-replicas")
    finally:
        worker.close()
