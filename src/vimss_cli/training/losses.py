"""Training losses: waveform L1 or thresholded SDR, plus an optional multi-resolution
log-STFT term (``optim.loss``, ``optim.spectral_weight``) and an optional L1 term on the
stems refined by soft masks on the mixture (``optim.masked_weight``); the motion encoder's
auxiliary "does this player sound" loss (``optim.activity_weight``); and plain SDR for
validation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vimss_cli.training.config import OptimConfig

#: Thresholded SDR saturates here (dB): a stem already this good stops pulling on the weights.
SDR_LOSS_CAP_DB = 30.0
#: A player sounds in a motion frame when its stem's power over the frame is within this many
#: dB of the mixture's mean power over the excerpt: audible in the mix, not a release tail.
AUDIBLE_BELOW_MIXTURE_DB = 30.0


def sdr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain signal-to-distortion ratio in dB over the last axis (no distortion filter)."""
    noise = (target - estimate).pow(2).sum(-1).clamp_min(1e-10)
    return 10 * torch.log10(target.pow(2).sum(-1).clamp_min(1e-10) / noise)


def thresholded_sdr_loss(
    estimates: torch.Tensor, targets: torch.Tensor, mixture: torch.Tensor
) -> torch.Tensor:
    """Mean negative thresholded SDR in dB (Wisdom et al. 2020, MixIT), lower is better.

    Args:
        estimates: ``(B, Q, T)`` separated stems.
        targets: ``(B, Q, T)`` true stems (all zero for a player who is absent or silent).
        mixture: ``(B, 1, T)`` the mixtures the stems came from.

    A stem with signal scores ``-10 log10(|t|^2 / (|t - e|^2 + tau |t|^2))``, which saturates
    at :data:`SDR_LOSS_CAP_DB`. A silent stem, for which SDR is undefined, scores the
    estimate's energy against the mixture's, ``10 log10((|e|^2 + tau |m|^2) / |m|^2)``: the
    same scale, best when the output is the cap below the mixture.
    """
    tau = 10 ** (-SDR_LOSS_CAP_DB / 10)
    eps = 1e-8
    target_energy = targets.pow(2).sum(-1)
    mixture_energy = mixture.pow(2).sum(-1).expand_as(target_energy)
    active = target_energy > 1e-6 * mixture_energy.clamp_min(eps)
    error = (targets - estimates).pow(2).sum(-1)
    with_signal = 10 * torch.log10(error + tau * target_energy + eps) - 10 * torch.log10(
        target_energy + eps
    )
    silent = 10 * torch.log10(
        estimates.pow(2).sum(-1) + tau * mixture_energy + eps
    ) - 10 * torch.log10(mixture_energy + eps)
    return torch.where(active, with_signal, silent).mean()


def multi_resolution_stft_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance of log-magnitude STFTs at three resolutions; inputs ``(N, T)``."""
    total = estimate.new_zeros(())
    for n_fft in (256, 1024, 2048):
        window = torch.hann_window(n_fft, device=estimate.device)
        spectra = [
            torch.stft(x.float(), n_fft, n_fft // 4, window=window, return_complex=True).abs()
            for x in (estimate, target)
        ]
        total = total + F.l1_loss(torch.log1p(spectra[0]), torch.log1p(spectra[1]))
    return total / 3


def soft_masked(estimates: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """The stems refined on their mixture as :class:`vimss_cli.soft_masks.SoftMaskFilter`
    refines them (frames of ``N_FFT`` every ``HOP``, shares ``|S_k| ** POWER`` and one for
    the rest), differentiably: ``(B, Q, T)`` stems, ``(B, 1, T)`` mixture -> ``(B, Q, T)``.
    The frames are torch's centred ones, not the streaming grid: the same masks, other
    edges."""
    from vimss_cli.soft_masks import HOP, N_FFT, POWER

    batch, players, length = estimates.shape
    window = torch.hann_window(N_FFT, device=estimates.device)

    def spectra(x: torch.Tensor) -> torch.Tensor:  # zeros beyond the ends, as when streaming
        return torch.stft(x.reshape(-1, length).float(), N_FFT, HOP, window=window,
                          pad_mode="constant", return_complex=True)  # fmt: skip

    stems = spectra(estimates).reshape(batch, players, N_FFT // 2 + 1, -1)
    whole = spectra(mixture).reshape(batch, 1, N_FFT // 2 + 1, -1)
    rest = whole - stems.sum(dim=1, keepdim=True)

    def share(x: torch.Tensor) -> torch.Tensor:  # |x| ** POWER, with a gradient at 0
        return (x.real.square() + x.imag.square() + 1e-12).pow(POWER / 2)

    shares = share(stems)
    masks = shares / (shares.sum(dim=1, keepdim=True) + share(rest))
    refined = (masks * whole).reshape(batch * players, N_FFT // 2 + 1, -1)
    out = torch.istft(refined, N_FFT, HOP, window=window, length=length)
    return out.reshape(batch, players, length)


def masked_l1_loss(
    estimates: torch.Tensor, targets: torch.Tensor, mixture: torch.Tensor
) -> torch.Tensor:
    """Mean absolute error of the soft-masked stems (:func:`soft_masked`) against the
    targets; ``(B, Q, T)``, ``(B, Q, T)``, ``(B, 1, T)``."""
    return F.l1_loss(soft_masked(estimates, mixture), targets)


def training_loss(
    optim: OptimConfig, estimates: torch.Tensor, targets: torch.Tensor, mixture: torch.Tensor
) -> torch.Tensor:
    """The loss ``optim`` asks for: ``estimates`` and ``targets`` ``(B, Q, T)`` float32,
    ``mixture`` ``(B, 1, T)`` over the same output span (what the SDR loss scores silent
    stems against)."""
    if optim.loss == "sdr":
        loss = thresholded_sdr_loss(estimates, targets, mixture)
    else:
        loss = F.l1_loss(estimates, targets)
    if optim.spectral_weight > 0:
        loss = loss + optim.spectral_weight * multi_resolution_stft_loss(
            estimates.flatten(0, 1), targets.flatten(0, 1)
        )
    if optim.masked_weight > 0:
        loss = loss + optim.masked_weight * masked_l1_loss(estimates, targets, mixture)
    return loss


def activity_loss(
    predicted: torch.Tensor,
    positions: torch.Tensor,
    targets: torch.Tensor,
    mixture: torch.Tensor,
    first_output: int,
    frame_samples: float,
    scored: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """How loud each player is in each motion frame, predicted from its motion: the loss and
    the share of frames whose "sounds or not" the prediction gets right.

    The target is the frame's power of the player's stem against the mixture's mean power
    over the excerpt, in bels (dB / 10), floored at ``-AUDIBLE_BELOW_MIXTURE_DB / 10``: a rest
    is the floor, a note its level. Players of small ensembles rarely rest, so a yes/no target
    would be "yes" almost everywhere; the level also carries the dynamics and the note
    attacks that bow and breath move with. The loss is a smooth L1 (Huber, 1 bel).

    Args:
        predicted: ``(N, F)`` per motion frame, in bels (``WaveUNet.motion_activity``).
        positions: ``(N, F)`` float64 input-sample position of each frame's centre.
        targets: ``(N, T_out)`` each query's stem over the output span, which starts at
            input sample ``first_output``.
        mixture: ``(N, T_out)`` the mixture over the same span.
        frame_samples: samples per motion frame; a frame is scored when the
            ``frame_samples`` around its centre lie inside the output span.
        scored: ``(N,)`` bool, the queries to score (those whose motion is known).

    Returns:
        the mean loss over scored frames (zero, still tied to ``predicted``, when none is)
        and the share of them where ``predicted`` lies above the floor's half-bel margin
        exactly when the player sounds.
    """
    floor = -AUDIBLE_BELOW_MIXTURE_DB / 10
    length = max(1, round(frame_samples))
    span = targets.shape[-1]
    start = torch.round(positions - first_output - length / 2).long()
    inside = (start >= 0) & (start + length <= span) & scored.reshape(-1, 1)
    start = start.clamp(0, span - length)
    power = F.pad(targets.float().pow(2).cumsum(-1), (1, 0))  # (N, T_out + 1)
    frame_power = (power.gather(1, start + length) - power.gather(1, start)).clamp_min(0)
    reference = mixture.float().pow(2).mean(-1, keepdim=True).clamp_min(1e-10)
    level = torch.log10(frame_power / length / reference + 1e-12).clamp_min(floor)
    level = level.to(predicted.dtype)
    loss = F.smooth_l1_loss(predicted, level, reduction="none")
    weight = inside.to(predicted.dtype)
    count = weight.sum().clamp_min(1.0)
    sounds, heard = level > floor, predicted > floor + 0.5
    right = (sounds == heard).to(predicted.dtype)
    return (loss * weight).sum() / count, (right * weight).sum() / count
