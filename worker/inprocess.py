"""The in-process engine: vLLM's async engine inside the worker process, behind the same interface as
the HTTP adapter.

The process's one event loop (`worker.loop`), shared by every generation the Celery threads pool
delivers: requests from all threads land in one engine and batch together (plain `vllm.LLM` called from
many threads does not). Inside a daemonic process set VLLM_ENABLE_V1_MULTIPROCESSING=0.
"""

from __future__ import annotations

import itertools
from typing import Any

from pacore.core.compaction import parse_output
from pacore.settings import DEFAULT_STREAM_INTERVAL
from worker.engine import (
    BUDGET,
    EngineError,
    GenerationRequest,
    GenerationResult,
    Guard,
    HandBack,
    MayBlock,
    refused_before_start,
)
from worker.loop import LoopThread

GUARD_THREADS = 64  # guards waiting on the database (an outage) never hold up the other streams'


class InProcessEngine:
    def __init__(
        self,
        model_path: str,
        served_name: str,
        stream_interval: int = DEFAULT_STREAM_INTERVAL,
        **engine_kwargs: Any,
    ) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.served_name = served_name
        self.stream_interval = stream_interval
        self._ids = itertools.count()
        self.looper = LoopThread("vllm-loop", GUARD_THREADS)
        args = AsyncEngineArgs(model=model_path, served_model_name=served_name, **engine_kwargs)
        self.engine = self.looper.call(self._build(AsyncLLM, args))
        self.tokenizer = self.looper.call(self._tokenizer())

    async def _build(self, cls: Any, args: Any) -> Any:
        return cls.from_engine_args(args)

    async def _tokenizer(self) -> Any:
        return (
            self.engine.tokenizer if hasattr(self.engine, "tokenizer") else await self.engine.get_tokenizer()
        )

    def health(self) -> bool:
        return self.looper.alive() and not getattr(self.engine, "errored", False)

    def served_models(self) -> list[str]:
        return [self.served_name]

    def generate(
        self, request: GenerationRequest, guard: Guard | None = None, may_block: MayBlock | None = None
    ) -> GenerationResult:
        if request.model != self.served_name:
            raise EngineError("http", f"this engine serves {self.served_name!r}, not {request.model!r}", 404)
        if guard is not None and not guard("", 0, None):
            return refused_before_start()
        text = self.tokenizer.apply_chat_template(
            request.messages, tokenize=False, add_generation_prompt=True
        )
        prompt: Any = text + request.prefix  # fresh, or a continuation of text without ids
        if request.prefix_ids:  # a continuation from the exact ids: the rendered prompt's, then the prefix's
            rendered = request.prompt_ids or self.tokenizer.encode(text, add_special_tokens=False)
            prompt = {"prompt_token_ids": [*rendered, *request.prefix_ids]}
        try:
            return self.looper.call(self._generate(prompt, request, guard, may_block))
        except (EngineError, HandBack):
            raise
        except Exception as exc:  # the engine's own failures become the seam's error type
            raise EngineError("engine", f"{type(exc).__name__}: {exc}") from exc

    def _params(self, request: GenerationRequest) -> Any:
        """Outputs as deltas (the new tokens only: no copy of all so far per step), `stream_interval`
        tokens at a time where this vLLM has the setting."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        fields = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
            "output_kind": RequestOutputKind.DELTA,
        }
        if "stream_interval" in getattr(SamplingParams, "__struct_fields__", ()):
            fields["stream_interval"] = self.stream_interval
        return SamplingParams(**fields)

    async def _generate(
        self, prompt: Any, request: GenerationRequest, guard: Guard | None, may_block: MayBlock | None
    ) -> GenerationResult:
        final, request_id, stopped = None, f"pacore-{next(self._ids)}", False
        text: list[str] = []
        ids: list[int] = []
        told = told_ids = 0  # what the guard has been shown: pieces of text, token ids
        try:
            async for output in self.engine.generate(prompt, self._params(request), request_id):
                final = output
                if output.outputs:
                    text.append(output.outputs[0].text)
                    ids.extend(output.outputs[0].token_ids)
                if guard is None or output.finished or len(ids) - told_ids < self.stream_interval:
                    continue  # the guard acts per chunk of stream_interval tokens, as over HTTP
                delta, new_ids = "".join(text[told:]), ids[told_ids:]
                told, told_ids = len(text), len(ids)
                # A guard that may write to the database runs off the event loop, which all generations share.
                if may_block is None or may_block(len(ids)):
                    go_on = await self.looper.guarded(guard, delta, len(ids), new_ids)
                else:
                    go_on = guard(delta, len(ids), new_ids)
                if not go_on:
                    await self.engine.abort(request_id)
                    stopped = True
                    break
        except BaseException:  # a guard that raised (hand back), or cancellation
            await self.engine.abort(request_id)
            raise
        if final is None or not final.outputs:
            raise EngineError("stream", "the engine returned no output")
        raw = "".join(text)
        # The generation prompt ends inside the think block, so the raw text is reasoning, `</think>`,
        # conclusion: split on the client, as the server's reasoning parser would.
        reasoning, content = parse_output(request.prefix + raw)
        prompt_ids = request.prompt_ids
        if prompt_ids is None and request.prefix_ids is None and not request.prefix:
            prompt_ids = tuple(final.prompt_token_ids or ())
        return GenerationResult(
            content=content,
            reasoning=reasoning,
            finish_reason=BUDGET if stopped else final.outputs[0].finish_reason,
            prompt_tokens=len(final.prompt_token_ids or []),
            completion_tokens=len(ids),
            prompt_ids=prompt_ids,
            raw=raw,
            token_ids=tuple(ids),
        )

    def close(self) -> None:
        import gc

        self.engine.shutdown()
        self.looper.stop()
        del self.engine  # let vLLM's finaliser run now, not at interpreter exit when its modules are gone
        gc.collect()
