"""Draw the vanilla and the rectified Hopfield energy of a 2-D toy network side by side.

docs/method.md, "The dynamics" [reconstructed]: with memories Xi (H x 2), the vanilla modern Hopfield energy is
E_HE(v) = 1/2 ||v||^2 - LSE_beta(Xi v) and RecLag's rectified energy is
E_Rec(v) = min{E_HE(v), 1/2 ||v||^2 - theta}, theta = (1/beta) log(lambda H). The rectification adds a
basin around the origin, the OOD attractor: wherever LSE_beta(Xi v) <= theta (dashed curve) the update
v <- H(LSE_beta(Xi v) - theta) Xi^T softmax(beta Xi v) sends v to 0 in one step. A few trajectories of
each update are drawn from the same starting points.

    python scripts/plot_energy_landscape.py [--out docs/energy_landscape.png]
"""
import argparse
import math
import sys
from pathlib import Path

import torch
from matplotlib.patches import Circle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ood.reporting.reports import figure  # noqa: E402
from scores.reclag_dynamics import (hopfield_energy, iterate, lse, rectified_energy,  # noqa: E402
                           theta_from_lambda)

ROOT = Path(__file__).resolve().parents[1]


def toy_memories():
    """Four memories of different lengths and directions, so the basins are not all alike."""
    angles = torch.tensor([15.0, 100.0, 200.0, 290.0]) * math.pi / 180
    radii = torch.tensor([2.2, 1.9, 2.4, 2.0])
    return torch.stack([radii * torch.cos(angles), radii * torch.sin(angles)], 1).double()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "energy_landscape.png"), help="PNG to write")
    ap.add_argument("--beta", type=float, default=2.0, help="inverse temperature (default 2)")
    ap.add_argument("--lam", type=float, default=60.0,
                    help="inverse memory strength lambda > 1 of the rectified network (default 60)")
    args = ap.parse_args(argv)

    xi, beta, lam = toy_memories(), args.beta, args.lam
    H = xi.shape[0]
    theta = theta_from_lambda(lam, beta, H)
    r = (theta - math.log(H) / beta) / xi.norm(dim=1).max().item()     # property 2's guaranteed radius

    lim = 3.4
    axis = torch.linspace(-lim, lim, 301, dtype=torch.float64)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    e_he = hopfield_energy(grid, xi, beta).view(gx.shape)
    e_rec = rectified_energy(grid, xi, beta, lam).view(gx.shape)
    gate = (lse(grid @ xi.T, beta) - theta).view(gx.shape)             # <= 0: sent to the origin

    starts = torch.tensor([[-3.0, 2.6], [2.8, 2.9], [3.1, -0.9], [-0.3, -3.1], [0.55, 0.35],
                           [-0.65, 0.25], [-2.9, -1.4], [1.2, -1.6]], dtype=torch.float64)
    low = min(e_he.min().item(), e_rec.min().item())
    levels = torch.linspace(low, max(e_he.max().item(), e_rec.max().item()), 30).tolist()

    fig = figure(figsize=(12.5, 6.3), constrained_layout=True)
    axes = fig.subplots(1, 2)
    panels = [(axes[0], e_he, 0.0, r"vanilla MHN: $E_{HE}(v)=\frac{1}{2}\|v\|^2-\mathrm{LSE}_\beta(\Xi v)$"),
              (axes[1], e_rec, lam,
               r"RecLag: $E_{Rec}(v)=\min\{E_{HE}(v),\ \frac{1}{2}\|v\|^2-\theta\}$")]
    for ax, energy, lam_panel, title in panels:
        filled = ax.contourf(gx, gy, energy, levels=levels, cmap="viridis")
        ax.contour(gx, gy, energy, levels=levels[::2], colors="white", linewidths=0.4, alpha=0.5)
        for i, v0 in enumerate(starts):
            traj = iterate(v0.unsqueeze(0), xi, beta, lam_panel, steps=50, tol=1e-9,
                           return_trajectory=True)[:, 0]
            ax.plot(traj[:, 0], traj[:, 1], "-", color="tab:orange", lw=1.4, alpha=0.9,
                    label="trajectories of the update" if i == 0 else None)
            ax.plot(traj[0, 0], traj[0, 1], "o", color="tab:orange", ms=5, mec="black", mew=0.6)
            for a, b in zip(traj[:-1], traj[1:]):
                if (b - a).norm() > 0.15:
                    ax.annotate("", xy=b.tolist(), xytext=a.tolist(),
                                arrowprops=dict(arrowstyle="-|>", color="tab:orange", lw=1.4))
        ax.plot(xi[:, 0], xi[:, 1], "*", color="red", ms=16, mec="white", mew=0.8,
                label=r"memories $\xi_\mu$")
        if lam_panel > 0:
            ax.contour(gx, gy, gate, levels=[0.0], colors="white", linestyles="--", linewidths=1.6)
            ax.add_patch(Circle((0, 0), r, fill=False, color="white", lw=1.0, ls=":"))
            ax.plot([0], [0], "X", color="white", ms=13, mec="black", mew=1.0, label="OOD attractor (origin)")
            ax.plot([], [], "--", color="white", label=r"gate boundary $\mathrm{LSE}_\beta(\Xi v)=\theta$")
            ax.plot([], [], ":", color="white", label=f"radius r of property 2 ({r:.2f})")
        ax.set_title(title, fontsize=11)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("$v_1$")
        ax.set_ylabel("$v_2$")
        leg = ax.legend(loc="lower left", fontsize=8, framealpha=0.85)
        leg.get_frame().set_facecolor("#dddddd")
    fig.colorbar(filled, ax=axes, shrink=0.85, label="energy", format="%.1f")
    fig.suptitle(rf"2-D toy network, H = {H} memories, $\beta$ = {beta:g}, $\lambda$ = {lam:g} "
                 rf"($\theta$ = {theta:.2f})", fontsize=12)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
