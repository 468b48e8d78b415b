"""What one batch sends, to which checkpoint, and the cache key that follows from both.

A stored answer may only be re-used for *this* request to *these* weights. The served name
(``caprl``) is an alias every CapRL checkpoint shares, so a key is built from:

* the checkpoint the server reports it loaded (:attr:`ServerInfo.checkpoint`: vLLM's
  ``/v1/models`` ``root``, plus ``parent`` for a LoRA adapter);
* everything sent that can change the answer: the task and prompt, sampling *as sent*
  (``max_tokens`` after fitting the server's ``max_model_len``), the seed, the structured-output
  fields (the response schema, in the server's dialect), and the image budget (model-family
  preset and the most image tokens an image may cost);
* the image's bytes (sha256).

The alias, vLLM version, ``max_model_len`` and server URL are provenance, not identity.

Keys of schema 1 (written by caprl_nb 0.1, before keys named the checkpoint) hashed the alias
instead. Such rows stay readable but are never served for a checkpoint unless the user adopts
them (``caprl-nb store adopt ALIAS CHECKPOINT``); :func:`legacy_key` finds them then.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from caprl_nb.client import ServerInfo
from caprl_nb.errors import RequestRejectedError
from caprl_nb.models import ModelPreset, match_preset, preset_named
from caprl_nb.prompts import Task

__all__ = ["KEY_VERSION", "RequestPlan", "legacy_key", "plan_request", "token_budget"]

KEY_VERSION = 2


def _digest(document: dict[str, Any]) -> str:
    blob = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class RequestPlan:
    """One batch's request, fitted to the server that answers it."""

    info: ServerInfo
    preset: ModelPreset
    image_budget: int | None  # most image tokens one image may cost; None: no limit known
    max_tokens: int  # as sent (lowered to fit max_model_len when needed)
    structured: dict[str, Any]  # response_format / guided_json fields; {} for free text
    request: dict[str, Any]  # everything sent that changes the answer, besides the image

    @property
    def checkpoint(self) -> str:
        return self.info.checkpoint

    def key(self, image_sha256: str) -> str:
        template = self._key_template
        if template is None or not (image_sha256.isascii() and image_sha256.isalnum()):
            return _digest(self._key_document(image_sha256))
        # The same digest, without serialising the request again for every row (a cached
        # re-run computes thousands of keys).
        head, tail = template
        return hashlib.sha256(head + image_sha256.encode() + tail).hexdigest()

    def keys(self, image_sha256s: Iterable[str]) -> list[str]:
        """:meth:`key` of many image hashes (a cached re-run's chunk of rows), the same keys."""
        template = self._key_template
        if template is None:
            return [self.key(sha) for sha in image_sha256s]
        head, tail = template
        digest, key = hashlib.sha256, self.key
        return [
            digest(head + sha.encode() + tail).hexdigest() if sha.isascii() and sha.isalnum() else key(sha)
            for sha in image_sha256s
        ]

    def _key_document(self, image_sha256: str) -> dict[str, Any]:
        return {"v": KEY_VERSION, "image": image_sha256, "checkpoint": self.checkpoint, "request": self.request}

    @functools.cached_property
    def _key_template(self) -> tuple[bytes, bytes] | None:
        """The key document serialised around its image hash, (before, after); None if the
        request itself holds the placeholder (then every key is serialised in full)."""
        marker = "0" * 64
        blob = json.dumps(self._key_document(marker), sort_keys=True, separators=(",", ":"))
        head, found, tail = blob.partition(f'"image":"{marker}"')
        if not found or marker in head + tail:
            return None
        return (head + '"image":"').encode(), ('"' + tail).encode()


def token_budget(task: Task, preset: ModelPreset, max_model_len: int | None) -> tuple[int | None, int]:
    """``(max image tokens, max_tokens)`` that keep one request inside ``max_model_len``.

    The image shrinks first; only when even a small image (256 tokens, or the preset's minimum)
    would not fit beside ``max_tokens`` is ``max_tokens`` lowered.
    """
    want = task.sampling.max_tokens
    if not max_model_len:
        return None, want
    room = max_model_len - task.prompt_token_estimate()
    floor = max(preset.min_image_tokens, min(256, room // 2))
    if room - want >= floor:
        return room - want, want
    max_tokens = room - floor
    if max_tokens < 1:
        msg = (
            f"The server's max_model_len ({max_model_len}) leaves no room for an image and an "
            "answer. Serve the model with a larger --max-model-len."
        )
        raise RequestRejectedError(msg)
    return floor, max_tokens


def plan_request(task: Task, info: ServerInfo, preset: str | None = None) -> tuple[RequestPlan, list[str]]:
    """The request ``task`` becomes on the server ``info`` describes, and notes for the user.

    ``preset`` names the model family when the checkpoint's name does not (a local path);
    otherwise it is inferred from the checkpoint, and a note says so when it had to be guessed.
    """
    notes: list[str] = []
    if preset is not None:
        chosen = preset_named(preset)
    else:
        found = match_preset(info.root, info.parent, info.model)
        if found is None:
            chosen = preset_named("qwen2.5-vl")
            notes.append(
                f"Cannot tell the model family of {info.root or info.model!r}; assuming "
                f"{chosen.name} for image sizes and token budgets. Pass preset= (or set "
                "CAPRL_PRESET) to 'qwen2.5-vl', 'qwen3-vl' or 'internvl3.5' to say which."
            )
        else:
            chosen = found
    if not info.verified:
        notes.append(
            f"The server at {info.base_url} does not say which checkpoint it loaded (no 'root' "
            f"in /v1/models), so its answers are stored under {info.checkpoint!r} and shared "
            "with nothing else."
        )
    image_budget, max_tokens = token_budget(task, chosen, info.max_model_len)
    s = task.sampling
    if max_tokens != s.max_tokens:
        notes.append(
            f"max_tokens lowered from {s.max_tokens} to {max_tokens} so image and answer fit "
            f"the server's max_model_len of {info.max_model_len}."
        )
    structured = task.structured_request(info.version)
    if task.json_schema is not None and info.version is None:
        notes.append(
            f"The server at {info.base_url} did not report a vLLM version (GET /version), so it "
            "may not support structured outputs and could ignore the schema; answers are still "
            "validated against it."
        )
    request: dict[str, Any] = {
        "task": task.name,
        "prompt": task.prompt,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "repetition_penalty": s.repetition_penalty,
        "max_tokens": max_tokens,
        "seed": s.seed,
        "structured": structured,
        "image": {"preset": chosen.family, "max_image_tokens": image_budget},
    }
    plan = RequestPlan(info, chosen, image_budget, max_tokens, structured, request)
    return plan, notes


def legacy_key(task: Task, image_sha256: str, alias: str) -> str | None:
    """The schema-1 key a row for this request was stored under by caprl_nb 0.1.

    Those keys hashed the served alias and the sampling asked for (not as sent). None when the
    request has something schema 1 never sent (a seed), so no old row can answer it.
    """
    if task.sampling.seed is not None:
        return None
    return _digest({"image": image_sha256, "model": alias, "params": task.params()})
