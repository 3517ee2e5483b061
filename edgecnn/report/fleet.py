"""The report of a benchmark on a fleet (`bench --remote`): what to ship on each host, the hosts themselves (their
device facts and what preparing them took), and every host's latency rows, as sections for Markdown and HTML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgecnn.report.document import Section
from edgecnn.report.ship import Recommendation
from edgecnn.report.tables import Cell, TextTable, Verdict, fleet_latency_rows, number, ship_rows, text_table, with_hosts
from edgecnn.stages.bench import BenchResult


def host_rows(hosts: Sequence[dict[str, Any]]) -> TextTable:
    """One row per host: where it ran, what it is, and what preparing it cost (a failed host: its one line)."""

    def cells(host: dict[str, Any]) -> tuple[Cell, ...]:
        device, preparation = host.get("device") or {}, host.get("preparation") or {}
        versions = device.get("versions", {})
        status = Verdict(False, f"FAILED: {host['error']}") if host["status"] == "failed" else Verdict(True, "ran")
        runtimes = ", ".join(f"{name} {versions[name]}" for name in ("onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "openvino") if name in versions)
        prepared = (f"{preparation['seconds']:.1f} s, {preparation['bytes_sent'] / 1e6:.2f} MB sent"
                    + ("" if preparation["installed"] else " (reused)")) if preparation else "this machine"
        return (host["host"], device.get("cpu", "-"), number(device.get("cpu_count"), "d"), number(device.get("memory_mib"), ",d"),
                device.get("os", "-"), device.get("python", "-"), runtimes or "-", prepared, status)

    return text_table(("host", "CPU", "cores", "memory MiB", "OS", "Python", "runtimes", "prepared", "status"), hosts, cells, 7)


def fleet_sections(hosts: Sequence[dict[str, Any]], rows: Sequence[BenchResult], ship: Sequence[tuple[str, Recommendation]]) -> list[Section]:
    return [
        Section("What to ship on each host", text=("The fastest artifact that passed verify on that host, per target; verify ran there first, "
                                                  "against the export folder's stored reference.",),
                table=with_hosts(ship_rows([choice for _, choice in ship]), [host for host, _ in ship])),
        Section("Hosts", table=host_rows(hosts)),
        Section("Latency per call and throughput", table=fleet_latency_rows(rows)),
    ]
