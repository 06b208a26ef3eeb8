"""The frozen policy: a trained actor exported to a small ``.npz`` and run with plain numpy.

The same file and the same forward pass are used by the simulator, ``hlmm eval`` and the live
runner, so what was evaluated is what trades (DESIGN.md section 7)::

    policy = FrozenPolicy.load("experiments/ppo_cascade/policy.npz", config_digest=config.digest())
    mm = MarketMaker(config, instrument, fees, adjustment=policy.as_adjustment)

File contents (``.npz``, every entry a numpy array; strings are 0-d unicode arrays):

- ``format``: :data:`FORMAT_VERSION`; ``algo``: ``"ppo"`` or ``"sac"``.
- ``n_layers`` and ``W{i}`` (shape ``(out, in)``), ``b{i}`` (shape ``(out,)``), ``act{i}``
  (``"tanh"``, ``"relu"`` or ``"identity"``) for the actor MLP, the action head last.
- ``squash``: ``"tanh"`` (SAC: the mean goes through tanh and is then rescaled from [-1, 1]
  to the action space) or ``"clip"`` (PPO: the Gaussian mean is clipped to the action space).
- ``action_low`` / ``action_high``: the env's action space, shape ``(4,)``.
- ``obs_mean`` / ``obs_var`` / ``obs_clip`` / ``obs_epsilon``: VecNormalize statistics
  (``obs_clip = 0`` means the observation is used as is), shape ``(OBS_DIM,)``.
- ``obs_names``: the observation layout it was trained on (:data:`agent.observation.OBS_NAMES`).
- ``bounds``: the action-to-adjustment map (:class:`ActionBounds`), as 5 floats.
- ``config_digest``: :meth:`AgentConfig.digest` of the agent configuration it was trained with.
- ``versions``: ``"hlmm=… sb3=… torch=… numpy=…"`` of the exporting environment.

The action is four numbers in [-1, 1]; :class:`ActionBounds` maps them to a
:class:`PolicyAdjustment`, and zero maps to all-zero adjustments, i.e. exactly pure GLFT.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.observation import OBS_DIM, OBS_NAMES, build_observation
from agent.types import PolicyAdjustment

if TYPE_CHECKING:
    from agent.market_maker import MarketMaker

FORMAT_VERSION = 1
ACTION_DIM = 4  # half-spread, skew, bid size, ask size

_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "identity": lambda x: x,
}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the problem."""


class PolicyConfigMismatch(PolicyError):
    """The policy was trained for another agent configuration than the one it would run with."""


@dataclass(frozen=True, slots=True)
class ActionBounds:
    """How an action in [-1, 1]^4 becomes a :class:`PolicyAdjustment`.

    Each component is piecewise linear through zero, so a zero action is exactly pure GLFT:
    ``a[0]`` in [-1, 0] tightens the half-spread by up to ``half_spread_tighten_bps``, in [0, 1]
    widens it by up to ``half_spread_widen_bps`` (GLFT's fee floor still applies after it);
    ``a[1]`` shifts the fair price by up to ``skew_bps`` either way; ``a[2]``/``a[3]`` scale the
    bid/ask size by ``exp(a * size_log_mult)`` (the risk overlay still clips to the cap).
    """

    half_spread_tighten_bps: float = 2.0
    half_spread_widen_bps: float = 10.0
    skew_bps: float = 5.0
    size_log_mult: float = math.log(2.0)
    # the fifth slot keeps the stored array self-describing if a bound is added later
    reserved: float = 0.0

    def __post_init__(self) -> None:
        for name in ("half_spread_tighten_bps", "half_spread_widen_bps", "skew_bps", "size_log_mult"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"ActionBounds.{name}={value!r}: must be a finite number >= 0")

    def adjustment(self, action: np.ndarray) -> PolicyAdjustment:
        """Map an action (shape ``(4,)``, clipped to [-1, 1]) to the bounded adjustment."""
        # In Python floats: numpy calls on four numbers cost more than the arithmetic, and this
        # runs every env step. An infinity clips to the bound; only NaN is refused.
        values = np.asarray(action, dtype=np.float64).ravel().tolist()
        if len(values) != ACTION_DIM or any(map(math.isnan, values)):
            raise ValueError(f"action={action!r}: must be {ACTION_DIM} finite numbers")
        # comparisons rather than max/min calls (the values are floats, NaN refused above)
        a0, a1, a2, a3 = [v if -1.0 <= v <= 1.0 else (1.0 if v > 0.0 else -1.0) for v in values]
        return PolicyAdjustment(
            half_spread_bps=a0 * (self.half_spread_widen_bps if a0 >= 0.0 else self.half_spread_tighten_bps),
            skew_bps=a1 * self.skew_bps,
            bid_size_log_mult=a2 * self.size_log_mult,
            ask_size_log_mult=a3 * self.size_log_mult,
        )

    def as_array(self) -> np.ndarray:
        return np.array(astuple(self), dtype=np.float64)

    @classmethod
    def from_array(cls, arr: np.ndarray) -> ActionBounds:
        return cls(*(float(x) for x in np.asarray(arr, dtype=np.float64).reshape(-1)))


@dataclass(frozen=True)
class FrozenPolicy:
    """A deterministic actor evaluated with numpy. Build it with :meth:`load` or :func:`export_policy`."""

    algo: str
    weights: tuple[np.ndarray, ...]  # W_i, shape (out, in), float64
    biases: tuple[np.ndarray, ...]  # b_i, shape (out,)
    activations: tuple[str, ...]
    squash: str  # "tanh" or "clip"
    action_low: np.ndarray  # (ACTION_DIM,)
    action_high: np.ndarray
    obs_mean: np.ndarray  # (OBS_DIM,); zeros when no normalization
    obs_var: np.ndarray  # ones when no normalization
    obs_clip: float  # 0 = no normalization
    obs_epsilon: float
    bounds: ActionBounds
    config_digest: str
    versions: str
    obs_names: tuple[str, ...] = OBS_NAMES

    # ---------------------------------------------------------------- inference
    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """VecNormalize's observation transform, identical to SB3's (float64 here)."""
        x = np.asarray(obs, dtype=np.float64)
        if self.obs_clip <= 0.0:
            return x
        return np.clip((x - self.obs_mean) / np.sqrt(self.obs_var + self.obs_epsilon), -self.obs_clip, self.obs_clip)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action for a raw observation of shape ``(OBS_DIM,)`` or ``(n, OBS_DIM)``.

        Returns float32 of shape ``(ACTION_DIM,)`` or ``(n, ACTION_DIM)``, as SB3's
        ``model.predict(obs, deterministic=True)`` would (the observation is normalized first).
        """
        # SB3 hands the network float32 after normalizing; rounding the same way keeps us within 1e-6
        x = self.normalize(np.asarray(obs, dtype=np.float32)).astype(np.float32).astype(np.float64)
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.shape[1] != self.weights[0].shape[1]:
            raise ValueError(f"observation has {x.shape[1]} components, the policy expects {self.weights[0].shape[1]}")
        for w, b, act in zip(self.weights, self.biases, self.activations, strict=True):
            x = _ACTIVATIONS[act](x @ w.T + b)
        if self.squash == "tanh":
            x = self.action_low + 0.5 * (np.tanh(x) + 1.0) * (self.action_high - self.action_low)
        else:
            x = np.clip(x, self.action_low, self.action_high)
        out = x.astype(np.float32)
        return out[0] if single else out

    def adjustment(self, obs: np.ndarray) -> PolicyAdjustment:
        return self.bounds.adjustment(self.predict(obs))

    def as_adjustment(self, mm: MarketMaker) -> PolicyAdjustment:
        """The ``adjustment`` callable of :class:`MarketMaker`: observe, act, map to bounds."""
        return self.adjustment(build_observation(mm))

    # ---------------------------------------------------------------- storage
    def check_config(self, config_digest: str) -> None:
        """Refuse to run with an agent configuration the policy was not trained for."""
        if config_digest != self.config_digest:
            raise PolicyConfigMismatch(
                f"policy was trained with agent config {self.config_digest}, but the agent's config is "
                f"{config_digest}; retrain the policy or run with the configuration it was trained on"
            )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "format": np.array(FORMAT_VERSION),
            "algo": np.array(self.algo),
            "n_layers": np.array(len(self.weights)),
            "squash": np.array(self.squash),
            "action_low": self.action_low.astype(np.float64),
            "action_high": self.action_high.astype(np.float64),
            "obs_mean": self.obs_mean.astype(np.float64),
            "obs_var": self.obs_var.astype(np.float64),
            "obs_clip": np.array(self.obs_clip),
            "obs_epsilon": np.array(self.obs_epsilon),
            "obs_names": np.array(self.obs_names),
            "bounds": self.bounds.as_array(),
            "config_digest": np.array(self.config_digest),
            "versions": np.array(self.versions),
        }
        for i, (w, b, act) in enumerate(zip(self.weights, self.biases, self.activations, strict=True)):
            arrays[f"W{i}"] = w.astype(np.float32)
            arrays[f"b{i}"] = b.astype(np.float32)
            arrays[f"act{i}"] = np.array(act)
        with path.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path, config_digest: str | None) -> FrozenPolicy:
        """Read a policy file; refuse it when ``config_digest`` differs from the one it was
        trained with. ``None`` skips that check and is meant only for inspecting a file."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise PolicyError(f"{path}: not a readable policy file ({exc})") from None
        missing = {"format", "algo", "n_layers", "squash", "bounds", "config_digest"} - data.keys()
        if missing:
            raise PolicyError(f"{path}: missing entries {sorted(missing)}")
        if int(data["format"]) != FORMAT_VERSION:
            raise PolicyError(f"{path}: format={int(data['format'])}, this hlmm reads format {FORMAT_VERSION}")
        obs_names = tuple(str(s) for s in data["obs_names"])
        if obs_names != OBS_NAMES:
            raise PolicyError(
                f"{path}: trained on observation layout {list(obs_names)}, this hlmm builds {list(OBS_NAMES)}"
            )
        n = int(data["n_layers"])
        policy = cls(
            algo=str(data["algo"]),
            weights=tuple(data[f"W{i}"].astype(np.float64) for i in range(n)),
            biases=tuple(data[f"b{i}"].astype(np.float64) for i in range(n)),
            activations=tuple(str(data[f"act{i}"]) for i in range(n)),
            squash=str(data["squash"]),
            action_low=data["action_low"].astype(np.float64),
            action_high=data["action_high"].astype(np.float64),
            obs_mean=data["obs_mean"].astype(np.float64),
            obs_var=data["obs_var"].astype(np.float64),
            obs_clip=float(data["obs_clip"]),
            obs_epsilon=float(data["obs_epsilon"]),
            bounds=ActionBounds.from_array(data["bounds"]),
            config_digest=str(data["config_digest"]),
            versions=str(data["versions"]),
            obs_names=obs_names,
        )
        policy._validate(str(path))
        if config_digest is not None:
            policy.check_config(config_digest)
        return policy

    def _validate(self, source: str) -> None:
        if self.squash not in ("tanh", "clip"):
            raise PolicyError(f"{source}: squash={self.squash!r}: must be 'tanh' or 'clip'")
        for i, act in enumerate(self.activations):
            if act not in _ACTIVATIONS:
                raise PolicyError(f"{source}: act{i}={act!r}: must be one of {sorted(_ACTIVATIONS)}")
        if self.weights[0].shape[1] != OBS_DIM or self.weights[-1].shape[0] != ACTION_DIM:
            raise PolicyError(
                f"{source}: network maps {self.weights[0].shape[1]} -> {self.weights[-1].shape[0]}, "
                f"expected {OBS_DIM} -> {ACTION_DIM}"
            )
        for i in range(1, len(self.weights)):
            if self.weights[i].shape[1] != self.weights[i - 1].shape[0]:
                raise PolicyError(f"{source}: W{i} shape {self.weights[i].shape} does not follow W{i - 1}")


# ---------------------------------------------------------------------- export
def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist, label in (("hlmm", "hlmm"), ("stable-baselines3", "sb3"), ("torch", "torch"), ("numpy", "numpy")):
        try:
            parts.append(f"{label}={version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{label}=?")
    return " ".join(parts)


def _mlp_layers(modules: Any) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(W, b, activation) of an SB3 ``nn.Sequential`` of Linear and activation modules."""
    from torch import nn

    layers: list[tuple[np.ndarray, np.ndarray, str]] = []
    for m in modules:
        if isinstance(m, nn.Linear):
            bias = m.bias.detach().cpu().numpy() if m.bias is not None else np.zeros(m.out_features, np.float32)
            layers.append((m.weight.detach().cpu().numpy().copy(), bias.copy(), "identity"))
        elif isinstance(m, nn.Tanh | nn.ReLU) and layers and layers[-1][2] == "identity":
            w, b, _ = layers[-1]
            layers[-1] = (w, b, "tanh" if isinstance(m, nn.Tanh) else "relu")
        else:
            raise PolicyError(f"cannot export layer {m!r}: only Linear followed by Tanh or ReLU is supported")
    return layers


def export_policy(
    model: Any,
    path: str | Path,
    config_digest: str,
    obs_rms: Any = None,
    bounds: ActionBounds | None = None,
    clip_obs: float = 10.0,
    epsilon: float = 1e-8,
) -> FrozenPolicy:
    """Freeze an SB3 PPO or SAC model (MLP policy, Box spaces) to ``path``.

    :param obs_rms: VecNormalize's ``obs_rms`` (``.mean``, ``.var``), or None when the model
        was trained on raw observations; ``clip_obs``/``epsilon`` must be VecNormalize's.
    :param bounds: the action-to-adjustment map the env used in training.
    """
    from stable_baselines3 import PPO, SAC
    from torch import nn

    policy = model.policy
    if isinstance(model, PPO):
        if policy.use_sde or policy.squash_output:
            raise PolicyError("cannot export a PPO policy trained with gSDE / squashed output")
        if not isinstance(policy.pi_features_extractor, nn.Module) or policy.pi_features_extractor.__class__.__name__ != "FlattenExtractor":
            raise PolicyError("cannot export a PPO policy with a custom features extractor")
        layers = _mlp_layers(policy.mlp_extractor.policy_net) + _mlp_layers([policy.action_net])
        algo, squash = "ppo", "clip"
    elif isinstance(model, SAC):
        actor = policy.actor
        if actor.use_sde:
            raise PolicyError("cannot export a SAC policy trained with gSDE")
        layers = _mlp_layers(actor.latent_pi) + _mlp_layers([actor.mu])
        algo, squash = "sac", "tanh"
    else:
        raise PolicyError(f"cannot export {type(model).__name__}: only PPO and SAC are supported")
    space = model.action_space
    obs_dim = int(np.prod(model.observation_space.shape))
    if obs_rms is not None:
        mean = np.asarray(obs_rms.mean, dtype=np.float64)
        var = np.asarray(obs_rms.var, dtype=np.float64)
    else:
        mean, var, clip_obs = np.zeros(obs_dim), np.ones(obs_dim), 0.0
    frozen = FrozenPolicy(
        algo=algo,
        weights=tuple(w.astype(np.float64) for w, _, _ in layers),
        biases=tuple(b.astype(np.float64) for _, b, _ in layers),
        activations=tuple(a for _, _, a in layers),
        squash=squash,
        action_low=np.asarray(space.low, dtype=np.float64),
        action_high=np.asarray(space.high, dtype=np.float64),
        obs_mean=mean,
        obs_var=var,
        obs_clip=float(clip_obs),
        obs_epsilon=float(epsilon),
        bounds=bounds or ActionBounds(),
        config_digest=config_digest,
        versions=_versions(),
    )
    frozen._validate(f"export of {algo}")
    frozen.save(path)
    return frozen
