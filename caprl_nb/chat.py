"""The exact request caprl_nb sends for one image, for engines that caprl_nb does not drive.

On a GPU cluster without servers, Ray Data LLM runs vLLM engines itself
(``ray.data.llm.vLLMEngineProcessorConfig``, one engine per GPU). To get CapRL's own answers
there, and to find them again from a notebook, the rows must carry the same prompt, sampling and
image budget that ``df.caprl.caption`` sends, and the answers must land in the result store
under the same keys. :func:`chat_request` builds that request (the same code path:
:func:`caprl_nb.plan.plan_request`, :func:`caprl_nb.images.prepare`,
:func:`caprl_nb.client.chat_fields`), :meth:`ChatRequest.engine_row` turns it into a Ray Data
LLM row (``messages`` + ``sampling_params``), and :meth:`ChatRequest.store` writes an answer
as a batch would.

    from caprl_nb.chat import chat_request
    request = chat_request("photo.jpg", checkpoint="internlm/CapRL-3B", max_model_len=32768)
    request.fields        # the OpenAI chat completion body, as caprl_nb would POST it
    request.engine_row()  # {"messages": ..., "sampling_params": {...}} for vLLM's engine
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from caprl_nb import images
from caprl_nb.client import ServerInfo, chat_fields
from caprl_nb.config import DEFAULT_SERVED_NAME
from caprl_nb.plan import RequestPlan, plan_request
from caprl_nb.prompts import Task, caption_task
from caprl_nb.store import ResultStore

__all__ = ["DEFAULT_CHECKPOINT", "ChatRequest", "chat_request", "store_engine_answer"]

DEFAULT_CHECKPOINT = "internlm/CapRL-3B"

# vLLM SamplingParams names for the request fields that are sampling settings.
_SAMPLING = ("temperature", "top_p", "max_tokens", "repetition_penalty", "seed")


@dataclass(frozen=True)
class ChatRequest:
    """One image's request: its body, its store key, and what it was planned against."""

    fields: dict[str, Any]  # the chat completion body (``model``, ``messages``, sampling, ...)
    key: str  # the result store key (checkpoint + request + image bytes)
    image_sha256: str
    input: str  # the image as the store and messages describe it
    plan: RequestPlan
    task: Task
    sent_size: tuple[int, int]

    def engine_row(self) -> dict[str, Any]:
        """The row Ray Data LLM's vLLM engine stage takes: ``messages`` and ``sampling_params``
        (plus ``mm_processor_kwargs`` and the structured-output fields when the request has
        them), and the ``caprl_*`` columns :func:`store_engine_answer` needs to store the
        answer without preparing the image again. The image stays a base64 data URL."""
        f = self.fields
        row: dict[str, Any] = {
            "messages": f["messages"],
            "sampling_params": {k: f[k] for k in _SAMPLING if k in f},
        }
        for extra in ("mm_processor_kwargs", "response_format", "guided_json"):
            if extra in f:
                row[extra] = f[extra]
        row.update(
            caprl_key=self.key, caprl_image_sha256=self.image_sha256, caprl_input=self.input,
            caprl_sent_width=self.sent_size[0], caprl_sent_height=self.sent_size[1],
        )
        return row

    def store(
        self, store: ResultStore, text: str, *, finish_reason: str | None = "stop",
        prompt_tokens: int | None = None, completion_tokens: int | None = None, latency_s: float | None = None,
        base_url: str = "ray-data-llm",
    ) -> None:
        """Write one answer to ``store`` as a batch would, so ``df.caprl.caption`` and the gallery
        find it (keyed by the checkpoint, not by where it ran)."""
        _put(store, self.plan, self.task, self.engine_row(), text, finish_reason, prompt_tokens,
             completion_tokens, latency_s, base_url)


def _put(
    store: ResultStore, plan: RequestPlan, task: Task, row: dict[str, Any], text: str, finish_reason: str | None,
    prompt_tokens: int | None, completion_tokens: int | None, latency_s: float | None, base_url: str,
) -> None:
    info = plan.info
    store.put(
        key=row["caprl_key"], task=task.name, image_sha256=row["caprl_image_sha256"], input=row["caprl_input"],
        model=info.model, model_root=info.root, checkpoint=plan.checkpoint, base_url=base_url,
        server_version=info.version, params={**plan.request, "max_model_len": info.max_model_len},
        text=text, finish_reason=finish_reason, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        latency_s=latency_s, sent_width=int(row["caprl_sent_width"]), sent_height=int(row["caprl_sent_height"]),
        created_at=time.time(),
    )


def _plan(
    checkpoint: str, max_model_len: int | None, task: Task | None, model: str, preset: str | None,
    vllm_version: str | None,
) -> tuple[Task, RequestPlan]:
    task = task or caption_task()
    info = ServerInfo(
        base_url="", model=model, root=checkpoint, max_model_len=max_model_len, version=vllm_version,
        models=(model,),
    )
    plan, _notes = plan_request(task, info, preset)
    return task, plan


def store_engine_answer(
    store: ResultStore, row: dict[str, Any], text: str, *, checkpoint: str = DEFAULT_CHECKPOINT,
    max_model_len: int | None = 32768, task: Task | None = None, model: str = DEFAULT_SERVED_NAME,
    preset: str | None = None, vllm_version: str | None = "0.32.0", finish_reason: str | None = "stop",
    prompt_tokens: int | None = None, completion_tokens: int | None = None, base_url: str = "ray-data-llm",
) -> bool:
    """Store the answer to a row made by :meth:`ChatRequest.engine_row` (its ``caprl_*`` columns),
    with the same settings that made it, without preparing the image again: e.g. a Ray Data LLM
    job's output rows, with ``text=row["generated_text"]``. An empty answer is not stored (a
    re-run asks again); returns whether it was."""
    if not text or not str(text).strip():
        return False
    task, plan = _plan(checkpoint, max_model_len, task, model, preset, vllm_version)
    _put(store, plan, task, row, text, finish_reason, prompt_tokens, completion_tokens, None, base_url)
    return True


def chat_request(
    image: object,
    *,
    checkpoint: str = DEFAULT_CHECKPOINT,
    max_model_len: int | None = 32768,
    task: Task | None = None,
    model: str = DEFAULT_SERVED_NAME,
    preset: str | None = None,
    vllm_version: str | None = "0.32.0",
) -> ChatRequest:
    """The request ``df.caprl.caption`` would send for ``image`` to a vLLM server that loaded
    ``checkpoint`` with ``max_model_len`` (the image budget and ``max_tokens`` are fitted to it
    the same way), for ``task`` (default: CapRL's caption request)."""
    task, plan = _plan(checkpoint, max_model_len, task, model, preset, vllm_version)
    source = images.identify(image)
    payload = images.prepare(source, plan.preset, max_image_tokens=plan.image_budget)
    s = task.sampling
    fields = chat_fields(
        model=model, messages=task.messages(payload.data_url), temperature=s.temperature, top_p=s.top_p,
        max_tokens=plan.max_tokens, repetition_penalty=s.repetition_penalty, seed=s.seed,
        structured=plan.structured, processor_kwargs=payload.processor_kwargs,
    )
    return ChatRequest(
        fields=fields, key=plan.key(source.sha256), image_sha256=source.sha256, input=images.describe(image),
        plan=plan, task=task, sent_size=(payload.width, payload.height),
    )
