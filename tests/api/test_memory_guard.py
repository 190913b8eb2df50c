"""Memory a worker gives back (issue 28): the guard trims after big decodes and says when a
worker is over its ceiling; /v2 refuses a request that cannot fit before decoding any of it."""

from __future__ import annotations

from catdog.api.memory import MemoryGuard, rss_bytes
from catdog.model.decode import decode_image
from catdog.testing.hostile import V2_INFER_PATH, palette_bomb, v2_bomb_batch


def test_the_guard_trims_after_a_large_decode_only(cat_bytes):
    guard = MemoryGuard(None)
    decode_image(cat_bytes, min_side=256)
    assert guard.after_request() is False and guard.trims == 0  # a photo: nothing to give back
    decode_image(palette_bomb(), min_side=256)
    assert guard.after_request() is False and guard.trims == 1


def test_ordinary_photos_never_trim_however_many(cat_bytes):
    """Trimming gives the heap back and the next photos fault it in again: only a large decode
    between two requests is worth it, not the sum of many photos."""
    guard = MemoryGuard(None, trim_after=4 * len(cat_bytes) * 30)
    for _ in range(400):
        decode_image(cat_bytes, min_side=256)
        guard.after_request()
    assert guard.trims == 0


def test_over_the_ceiling_the_worker_is_to_be_replaced():
    assert rss_bytes() > 1_000_000
    assert MemoryGuard(1).after_request() is True
    assert MemoryGuard(1 << 45).after_request() is False


def test_v2_refuses_a_batch_of_bombs_from_the_headers(make_app):
    client = make_app(max_upload_mb=4).test_client()
    response = client.post(V2_INFER_PATH, data=v2_bomb_batch(32), content_type="application/json")
    assert response.status_code == 413, response.json
    assert response.json["code"] == "batch_budget_exceeded"
    assert "of input 'image': This file was not decoded" in response.json["error"]
