"""The engine adapter's classification of dockerd's answers, and image references: the only
place dockerd's texts are read (the real answers are checked in
tests/integration/test_engine_adapter.py)."""

from __future__ import annotations

import pytest

from cni2cnm.engine import (
    AddressInUse,
    AlreadyExists,
    Conflict,
    Deadline,
    InvalidRequest,
    NotAttachable,
    NotConnected,
    NotFound,
    Rejected,
    classify,
    split_image_ref,
)


@pytest.mark.parametrize(("status", "text", "kind"), [
    (403, "endpoint with name pod already exists in network pods", AlreadyExists),
    (403, "Address already in use", AddressInUse),
    (500, "container abc is not connected to network pods", NotConnected),
    (400, "Invalid address 10.9.9.9: It does not belong to any of this network's subnets",
     InvalidRequest),
    (400, "invalid endpoint settings:\nno configured subnet or ip-range contain the IP "
          "address 10.255.255.9", InvalidRequest),
    (400, "user specified IP address is supported only when connecting to networks with "
          "user configured subnets", InvalidRequest),
    (403, "Could not attach to network ovl: rpc error: code = PermissionDenied desc = "
          "network ovl not manually attachable", NotAttachable),
    (500, "context deadline exceeded", Deadline),
    (404, "network nope not found", NotFound),
    (404, "No such container: nope", NotFound),
    (409, "conflict", Conflict),
    (400, "container cannot be connected to multiple networks with one of the networks in "
          "private (none) mode", Rejected),
])
def test_classify(status: int, text: str, kind: type) -> None:
    e = classify(status, text)
    assert type(e) is kind and e.explanation == text and e.status == status


@pytest.mark.parametrize(("ref", "want"), [
    ("registry.k8s.io/pause:3.10", ("registry.k8s.io/pause", "3.10")),
    ("pause", ("pause", "latest")),
    ("host:5000/pause", ("host:5000/pause", "latest")),
    ("host:5000/pause:1", ("host:5000/pause", "1")),
    ("registry.k8s.io/pause@sha256:" + "a" * 64, ("registry.k8s.io/pause", "sha256:" + "a" * 64)),
    ("pause:3.10@sha256:" + "b" * 64, ("pause", "sha256:" + "b" * 64)),
])
def test_image_references_by_tag_or_digest(ref: str, want: tuple[str, str]) -> None:
    assert split_image_ref(ref) == want
