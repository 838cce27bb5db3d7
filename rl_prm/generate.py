"""Stage 1: policy rollouts on vLLM, and pushing learner weights into the running engine.

    engine = RolloutEngine(policy_dir, max_model_len=1024, kv_cache_gib=1)
    prompts = [chat_prompt_ids(tok, q, instruction) for q in questions]
    rollouts = engine.generate(prompts, n=4, temperature=1.0, top_p=1.0, max_tokens=128, seed=7)
    engine.load_weights(learner_model.state_dict().items())   # after a learner update

Each `Rollout` carries the prompt/response token ids, the decoded text, the finish reason (a
response cut at max_tokens is `truncated`) and the engine's per-token sampling logprobs (vLLM
"processed" logprobs: after temperature/top-p, the distribution actually sampled from; used only
as a rollout-vs-learner consistency metric, the learner recomputes its own old logprobs).

Weight sync: `llm.collective_rpc(fn)` runs fn(worker) in every vLLM worker process; fn calls
`worker.model_runner.reload_weights(weights_iterator=...)` (HF checkpoint names; vLLM's own
loader packs q/k/v etc.). The callable travels pickled, which vLLM only allows with
VLLM_ALLOW_INSECURE_SERIALIZATION=1 (set by rl_prm.vllm_engine.make_llm). The prefix cache
is reset afterwards: cached KV blocks were computed with the old weights.

The reload's one vLLM warning, "RotaryEmbedding: Failed to load weights", is not a failure:
vLLM's layerwise reloader (model_loader/reload/layerwise.py, finalize_layerwise_processing) counts
every parameter and buffer of a layer as loadable, and RotaryEmbedding's only tensor is the
non-persistent buffer cos_sin_cache, computed from the config and never in a checkpoint. No weight
arrives for it, so vLLM warns and puts the cache it had back in place (the right result). The
reload installs a logging filter in the worker that drops this line for layers whose tensors are
all non-persistent buffers (`_ComputedBufferFilter`); any other layer's failure is still logged.

`rollout_actor()` wraps the same class as a restartable Ray actor, and `RolloutClient` calls it
(used by the local backend): an engine that dies or hangs is restarted and gets the learner's
current weights back before the call is tried again (rl_prm.actors).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from rl_prm.actors import RestartingClient, engine_dead
from rl_prm.logs import redirect_process
from rl_prm.vllm_engine import engine_core_in_process, exit_when_engine_dies, in_ray_actor, make_llm, shutdown_llm

Prompt = Sequence[int] | str | list[dict]  # token ids | raw text | chat messages


@dataclass
class Rollout:
    """One sampled response.

    prompt_index: position of its prompt in the `generate` call (the GRPO/RLOO group)
    sample_index: 0..n-1 within the group
    logprobs:     per response token, the engine's sampling logprob (len == len(response_ids))
    truncated:    finish_reason == "length" (cut at max_tokens; its last step may be incomplete)
    """

    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    text: str
    finish_reason: str
    logprobs: list[float] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def chat_prompt_ids(tokenizer: Any, question: str, instruction: str = "") -> list[int]:
    """Token ids of the chat-templated user turn `question + " " + instruction` with the
    assistant header appended (generation prompt)."""
    content = f"{question} {instruction}".strip() if instruction else question
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True
    )
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
        ids = ids["input_ids"]
    return [int(i) for i in ids]


class _ComputedBufferFilter:
    """Drops vLLM's "<Layer>: Failed to load weights" for layer classes whose tensors are all
    non-persistent buffers (computed, never in a checkpoint; see the module doc)."""

    def __init__(self, model: Any):
        self.classes = {type(m).__name__ for m in model.modules()
                        if not m._parameters and m._buffers and set(m._buffers) <= m._non_persistent_buffers_set}

    def filter(self, record: Any) -> bool:
        return not (record.msg == "%s: Failed to load weights" and record.args and record.args[0] in self.classes)


def _quiet_reload(worker: Any) -> None:
    lg = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    if not any(isinstance(f, _ComputedBufferFilter) for f in lg.filters):
        lg.addFilter(_ComputedBufferFilter(worker.model_runner.get_model()))


def _reload_fn(weights: list[tuple[str, torch.Tensor]]):
    """A picklable fn(worker) loading `weights` (HF names) into the worker's model in place."""

    def fn(worker):
        _quiet_reload(worker)
        worker.model_runner.reload_weights(weights_iterator=iter(weights))
        return True

    return fn


def _fetch_fn(names: list[str]):
    """fn(worker) -> {name: tensor copy} for parameters of vLLM's model (vLLM's own names)."""

    def fn(worker):
        params = dict(worker.model_runner.get_model().named_parameters())
        return {n: params[n].detach().to("cpu", copy=True) for n in names if n in params}

    return fn


class RolloutEngine:
    """A vLLM engine for the policy with `generate` and `load_weights`.

    model: a local model dir (HF format). `llm`: reuse an existing vllm.LLM (tests share one).
    log_file: (an actor in a quiet session) where this process and its engine print (rl_prm.logs).
    """

    def __init__(self, model: str | os.PathLike | None = None, *, max_model_len: int = 2048, seed: int = 0,
                 kv_cache_gib: float = 1, gpu_memory_utilization: float = 0.4, llm: Any = None,
                 log_file: str | None = None):
        if log_file:
            redirect_process(log_file)
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        if llm is None:
            if model is None:
                raise ValueError("RolloutEngine needs a model path or an llm")
            engine_core_in_process()
            llm = make_llm(model, max_model_len=max_model_len, seed=seed, kv_cache_gib=kv_cache_gib,
                           gpu_memory_utilization=gpu_memory_utilization, logprobs_mode="processed_logprobs")
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.max_model_len = int(llm.llm_engine.model_config.max_model_len)
        if in_ray_actor():  # a dead engine core ends the actor, so Ray restarts it (RolloutClient retries)
            exit_when_engine_dies(llm, "rollout engine")

    # ------------------------------------------------------------------ generate
    def _prompt_ids(self, p: Prompt) -> list[int]:
        if isinstance(p, str):
            return [int(i) for i in self.tokenizer.encode(p, add_special_tokens=False)]
        if isinstance(p, list) and p and isinstance(p[0], dict):
            ids = self.tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        return [int(i) for i in p]  # token ids

    def _requests(self, prompts: Sequence[Prompt], n: int, temperature: float, top_p: float, max_tokens: int,
                  seed: int | None) -> tuple[list[list[int]], list[Any]]:
        """(prompt ids, SamplingParams) per prompt, checked (see `generate`)."""
        from vllm import SamplingParams  # vllm: seconds to import; only a process holding an engine needs it

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        ids = [self._prompt_ids(p) for p in prompts]
        for i, p in enumerate(ids):
            if not p:
                raise ValueError(f"prompt {i} is empty")
            if len(p) + 1 > self.max_model_len:
                raise ValueError(f"prompt {i} has {len(p)} tokens; the engine's max_model_len is {self.max_model_len}")
        return ids, [SamplingParams(n=n, temperature=temperature, top_p=top_p, logprobs=0,
                                    max_tokens=max(1, min(max_tokens, self.max_model_len - len(p))),
                                    seed=None if seed is None else int(seed) + i * n) for i, p in enumerate(ids)]

    @staticmethod
    def _group(i: int, prompt_ids: list[int], out: Any) -> list[Rollout]:
        """The n Rollouts of prompt i from its vLLM RequestOutput."""
        group = []
        for j, c in enumerate(out.outputs):
            resp = [int(t) for t in c.token_ids]
            lps = []
            if c.logprobs is not None:
                for t, d in zip(resp, c.logprobs):
                    lp = d.get(t)
                    lps.append(float(lp.logprob) if lp is not None else float("nan"))
            group.append(Rollout(i, j, list(prompt_ids), resp, c.text, str(c.finish_reason), lps))
        return group

    def generate(self, prompts: Sequence[Prompt], n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
                 max_tokens: int = 256, seed: int | None = None) -> list[Rollout]:
        """n samples for each prompt, ordered prompt-major (prompt 0's n samples first).

        temperature 0 = greedy. With `seed`, prompt i uses seed + i * n (vLLM gives sample j of
        a request seed + j), so a call is reproducible and samples never share a stream.
        """
        ids, params = self._requests(prompts, n, temperature, top_p, max_tokens, seed)
        outs = self.llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
        return [r for i, out in enumerate(outs) for r in self._group(i, ids[i], out)]

    def generate_stream(self, prompts: Sequence[Prompt], n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
                        max_tokens: int = 256, seed: int | None = None) -> Iterator[list[Rollout]]:
        """`generate`'s rollouts (same requests, same seeds), each prompt's n yielded as one list as soon
        as all n have finished, in finishing order. Where vLLM cannot take requests into a running engine
        (no `LLM.enqueue`: vLLM 0.24) it runs one `generate` and then yields every group."""
        ids, params = self._requests(prompts, n, temperature, top_p, max_tokens, seed)
        if not hasattr(self.llm, "enqueue"):
            outs = self.llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
            yield from (self._group(i, ids[i], out) for i, out in enumerate(outs))
            return
        internal = self.llm.enqueue([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
        waiting = {rid.rsplit("-", 1)[0]: i for i, rid in enumerate(internal)}  # outputs carry the external id
        engine = self.llm.llm_engine
        try:
            while waiting:
                for out in engine.step():
                    i = waiting.pop(out.request_id, None) if getattr(out, "finished", False) else None
                    if i is not None:
                        yield self._group(i, ids[i], out)
                if waiting and not engine.has_unfinished_requests():
                    raise RuntimeError(f"rollout engine finished without returning {len(waiting)} request(s)")
        finally:  # closed early or failed: nothing may be left in the engine for the next call
            if waiting:
                engine.abort_request([internal[i] for i in waiting.values()], internal=True)

    # ------------------------------------------------------------------ weights
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Load HF-named tensors into the running engine (in place) and reset its prefix cache.

        Returns the number of tensors sent.
        """
        weights = [(str(n), t.detach().to("cpu").contiguous()) for n, t in named_tensors]
        if not weights:
            raise ValueError("load_weights got no tensors")
        self.llm.collective_rpc(_reload_fn(weights))
        self.llm.reset_prefix_cache()
        return len(weights)

    def fetch_weights(self, names: list[str]) -> dict[str, torch.Tensor]:
        """Copies of the engine's parameters `names` (vLLM names, e.g. 'model.norm.weight').

        vLLM pads embedding rows to a multiple of 64 and fuses q/k/v and gate/up; on CPU it also
        repacks linear weights into kernel formats (those parameters read as empty), so compare
        norms and embeddings (first vocab_size rows) with HF tensors."""
        return self.llm.collective_rpc(_fetch_fn(list(names)))[0]

    def shutdown(self) -> None:
        shutdown_llm(self.llm)

    def ready(self) -> bool:
        return True

    def pid(self) -> int:
        return os.getpid()


def rollout_actor(num_cpus: float = 0, num_gpus: float = 0, max_restarts: int = 3):
    """RolloutEngine as a restartable Ray actor class (the local backend's rollout worker). No task
    retries: a call pending when the engine died is retried by `RolloutClient`, once the fresh
    engine holds the learner's weights (Ray's retry would sample from the start weights)."""
    import ray  # ray: about a second to import; chat_prompt_ids and an in-process RolloutEngine do without it

    return ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts,
                      max_task_retries=0)(RolloutEngine)


class RolloutClient(RestartingClient):
    """The rollout actor's calls, with RolloutEngine's signatures; a dead, engine-dead or hung
    (past `timeout`) actor is restarted, given the learner's current weights (`weights()`, else
    the last `load_weights` tensors) and the call tried again (rl_prm.actors)."""

    what = "rollout engine"

    def __init__(self, handle: Any, weights: Callable[[], Iterable[tuple[str, torch.Tensor]]] | None = None,
                 timeout: float | None = None, retries: int = 2, ready_timeout: float = 900.0):
        super().__init__(handle, retries=retries, ready_timeout=ready_timeout)
        self.weights, self.timeout = weights, timeout
        self._last: list[tuple[str, torch.Tensor]] | None = None

    def generate(self, prompts: Sequence[Prompt], **kwargs: Any) -> list[Rollout]:
        return self.call("generate", list(prompts), timeout=self.timeout, **kwargs)

    def generate_stream(self, prompts: Sequence[Prompt], **kwargs: Any) -> Iterator[list[Rollout]]:
        """RolloutEngine.generate_stream through the actor: each prompt's rollouts as they finish. When
        the stream fails (the actor or its engine died, or no group came within `timeout`), the
        prompts not yet returned come from one `generate` call, with its restarts and retries (same
        seeds, so the samples the stream would have returned) and an event saying so."""
        import ray  # about a second to import (see rollout_actor)
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        prompts, done = list(prompts), set()
        stream = self.handle.generate_stream.remote(prompts, **kwargs)
        try:
            while True:
                ready, _ = ray.wait([stream], timeout=self.timeout)
                if not ready:
                    raise GetTimeoutError(f"no rollouts within {self.timeout} s")
                try:
                    group = ray.get(next(stream))
                except StopIteration:
                    return
                done.add(group[0].prompt_index)
                yield group
        except GetTimeoutError:
            self.timeouts += 1
            self._suspect, why = True, f"streamed no rollouts for {self.timeout:g} s"
        except RayActorError as e:
            why = f"died while streaming rollouts ({type(e).__name__})"
            self._restart(kill=False, why=f"{self.what} {why}")
        except RayTaskError as e:
            if not engine_dead(e):
                raise
            self._suspect, why = True, "'s engine core died while streaming rollouts"
        finally:
            ray.cancel(stream)
        self._events.append(f"{self.what} {why}: the {len(prompts) - len(done)} prompts not yet returned are "
                            "generated again in one call")
        rest = [o for o in self.generate(prompts, **kwargs) if o.prompt_index not in done]
        for i in sorted({o.prompt_index for o in rest}):
            yield [o for o in rest if o.prompt_index == i]

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        self._last = list(named_tensors)
        return self.call("load_weights", self._last, timeout=self.timeout)

    def fetch_weights(self, names: list[str]) -> dict[str, torch.Tensor]:
        return self.call("fetch_weights", list(names), timeout=self.timeout)

    def ready(self) -> bool:
        """Wait for the engine to start (no restarts: a start that fails raises, with the actor's error)."""
        import ray  # about a second to import (see rollout_actor)

        return ray.get(self.handle.ready.remote())

    def pid(self) -> int:
        return self.call("pid", timeout=self.timeout)

    def on_restart(self) -> None:
        import ray  # about a second to import (see rollout_actor)

        weights = list(self.weights()) if self.weights is not None else self._last
        if weights:  # a fresh actor holds the weights it was created from
            ray.get(self.handle.load_weights.remote(weights), timeout=self.timeout)


def step_seed(run_seed: int, step: int, prompts_per_step: int, n: int) -> int:
    """Base sampling seed of training step `step` (1-based): generate() gives sample j of prompt i
    seed + i*n + j, so each step owns the disjoint range [seed, seed + prompts_per_step * n) and no two
    samples of a run share a random stream (runs with different seeds are 2**32 apart)."""
    return int(run_seed) * 2**32 + (step - 1) * prompts_per_step * n
