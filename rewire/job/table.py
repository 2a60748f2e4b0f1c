"""The table printed at the end of the main job, read from its report
(:func:`rewire.job.report.build_report`)."""

from __future__ import annotations


def format_report(report: dict) -> str:
    """The human-readable table printed at the end of the main job."""
    r, g, b, t = report["result"], report["gradr"], report["budget"], report["timings"]
    lim = report["profile_limits"]
    p = report["projection"]
    fans = "".join([f", fan-in <= {b['max_fan_in']}" if b["max_fan_in"] else "",
                    f", fan-out <= {b['max_fan_out']}" if b.get("max_fan_out") else ""])
    missed = g.get("missed")
    rows = [
        ("profile", report["profile"]),
        ("dataset / network", f"{report['dataset']} {report['network']['sizes']} "
                              f"T={report['network']['steps']} ({report['network']['encoding']})"),
        ("budget", f"{b['max_synapses']} synapses ({b['connectivity']:.2%}){fans}; binding "
                   f"limit: {b['source']}"),
        ("GradR alone", f"{g['synapses']} synapses ({g['connectivity']:.2%}), accuracy "
                        f"{g['accuracy']:.2%}, "
                        + ("met every limit" if g["met_budget"] else
                           "missed: " + ("; ".join(missed) if missed else "the budget"))),
        ("projection", f"removed {p['removed_synapses']} synapses"
                       + (f" ({p.get('removed_share', 0):.1%} of GradR's), float accuracy "
                          f"{g['accuracy']:.2%} -> {r['float_accuracy']:.2%} (cost "
                          f"{100 * p['accuracy_cost']:+.2f} points)"
                          if p["removed_synapses"] else "")),
        ("connectivity", f"{r['connectivity']:.2%} ({r.get('trained_synapses', r['synapses'])} "
                         f"/ {b['total_synapses']} trainable synapses)"
                         + (f"; plus {r['fixed_synapses']} fixed pooling synapses"
                            if r.get("fixed_synapses") else "")),
        ("max fan-in", f"{r['max_fan_in']}" + (f" / {b['max_fan_in']}" if b["max_fan_in"]
                                               else " (no fan-in limit)")),
        ("neurons", f"{r['neurons']}"),
        ("cores used", f"{r['cores']} of {lim['cores']} {r['cores_per_layer']}"),
        ("float accuracy", f"{r['float_accuracy']:.2%}"),
        ("quantized accuracy", f"skipped: {r.get('not_compiled')}"
                               if r["quantized_accuracy"] is None else
                               f"{r['quantized_accuracy']:.2%} (integer chip model; "
                               f"drop {100 * r['quantization_drop']:+.2f} points)"),
    ]
    from rewire.job.qat_rule import qat_line

    if qat_line(report.get("qat") or {}):
        rows.append(("QAT", qat_line(report["qat"])))
    lava = report["lava_check"]
    if "samples" in lava and not lava.get("output_spikes", 1):
        rows.append(("Lava check", f"FAILED: compared no output spikes ({lava['samples']} "
                                   f"silent samples prove nothing about the export)"))
    elif "samples" in lava:
        rows.append(("Lava check", f"{lava['spike_exact']}/{lava['samples']} samples "
                                   f"spike-exact vs integer model "
                                   f"({lava['output_spikes']} output spikes)"))
    else:
        rows.append(("Lava check", f"skipped: {lava['skipped']}"))
    rows += chip_rows(report)
    eq = report.get("equivalence")
    if eq:
        for l in eq["layers"]:
            first = l["first_divergence"]
            rows.append((f"float vs int {l['name']}",
                         f"{l['spike_agreement']:.2%} spikes agree, "
                         + ("never diverge" if first is None else
                            f"first divergence at step {first}, "
                            f"{l['diverged_samples']:.1%} of samples diverge")))
        rows.append(("float vs int output", f"same class on {eq['prediction_agreement']:.2%} "
                                            f"of {eq['samples']} test samples"))
    typed = report.get("compiler_warnings") or []
    if typed:  # each one in full at the end, between the lines of "!"
        rows.append(("compiler warnings", f"{len(typed)}: " + ", ".join(
            f"{w['code']} {w['layer']}".rstrip() for w in typed)
            + " (the chip model differs from the trained one: see below)"))
    rows += metric_rows(report)
    fmt = report.get("formats")
    if fmt:
        rows.append(("export formats", f"{report['profile']} takes {fmt['chip']}; written "
                                       f"{fmt['written']}" + "".join(
                                           f"; {k} skipped: {v}" for k, v in fmt["skipped"].items()
                                           if k in fmt["chip"])))
    rows.append(("time", f"train {t['train_s']:.1f} s, compile {t['compile_s']:.1f} s, "
                         f"export {t['export_s']:.2f} s, total {t['total_s']:.1f} s"))
    for name, path in report.get("files", {}).items():
        rows.append((f"file: {name}", path))
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 60)
    table = [line] + [f"{k:<{width}}  {v}" for k, v in rows] + [line]
    warned = report.get("warnings") or []
    if warned:
        bar = "!" * (width + 60)
        table += [bar, f"{len(warned)} WARNING(S): this result may be bad"] \
            + [f"WARNING: {w}" for w in warned] + [bar]
    return "\n".join(table)


def chip_rows(report: dict) -> list[tuple[str, str]]:
    """The table's XyloSim check line and fan-out lines (none when the report has neither):
    the fan-out lines on a chip that limits fan-out (``profile_limits.fan_out``)."""
    rows = []
    xylo = report.get("xylo_check")
    if xylo and "samples" not in xylo:
        rows.append(("XyloSim check", f"skipped: {xylo.get('skipped')}"))
    elif xylo:
        verdict = "" if xylo.get("compared") else "FAILED: compared nothing; "
        rows.append(("XyloSim check", f"{verdict}{xylo['samples_equal']}/{xylo['samples']} "
                                      f"test samples equal in every recorded state "
                                      f"({xylo['states_compared']:,} states compared, "
                                      f"{xylo['output_spikes']:,} output spikes)"))
    if report.get("profile_limits", {}).get("fan_out"):
        for row in report.get("fan_out") or []:
            limit = f"<= {row['limit']}" if row["limit"] else "not limited"
            ok = "" if row["within"] else " OVER THE LIMIT"
            rows.append((f"fan-out {row['source']}", f"{row['max_fan_out']} into "
                                                     f"{row['into']} ({limit}){ok}"))
    return rows


def metric_rows(report: dict) -> list[tuple[str, str]]:
    """The table's NeuroBench metrics and energy lines (``report["metrics"]`` and
    ``report["energy"]``; none when the report has no metrics)."""
    m, e = report.get("metrics"), report.get("energy")
    if not m:
        return []
    ops = m["synaptic_operations"]
    layers = ", ".join(f"{l['name']} {l['activation_sparsity']:.4f}" for l in m["layers"]
                       if l["activation_sparsity"] is not None)
    rows = [("synaptic ops / sample", f"{ops['effective_macs']:,.1f} MACs + "
                                      f"{ops['effective_acs']:,.1f} ACs (dense {ops['dense']:,.0f}; "
                                      f"NeuroBench 2.3 definitions, integer model, "
                                      f"{m['samples']} test samples)"),
            ("activation sparsity", f"{m['activation_sparsity']:.4f} ({layers})"),
            ("membrane updates", f"{m['membrane_updates']:,.1f} / sample"),
            ("footprint", f"{m['footprint_bytes']:,} B as float32 weights "
                          f"({m['chip_weight_bytes']:,.0f} B of chip weights); connection "
                          f"sparsity {m['connection_sparsity']:.4f}")]
    if e:
        rows.append(("energy (modelled)",
                     f"no estimate: {e['reason']}" if e["nj_per_sample"] is None else
                     f"{e['nj_per_sample']:,.1f} nJ / sample from published per-event "
                     f"figures ({e['note']})"))
    return rows


__all__ = ["chip_rows", "format_report", "metric_rows"]
