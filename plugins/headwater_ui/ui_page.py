"""The Headwater page's HTML, rendered from the summary the JSON API serves (pure).

Every figure sits in an element with `data-source` / `data-check` / `data-field` attributes, so
a test (or a person with devtools) can find it and compare it with /api/summary. Every text from
MongoDB is escaped. The page lives in an iframe of the Airflow UI; its DAG links move the UI
itself to the DAG (see _NAVIGATE), not the frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

REFRESH_S = 30

# The Airflow UI frames this page (same origin, sandboxed without top navigation), so a plain
# link would open the whole UI again inside the frame. The UI's router follows the browser
# history: pushing the DAG's path onto the top window's history and announcing it with a
# popstate moves the UI there, as its own links do. Opened on its own, links work as usual.
_NAVIGATE = """
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-airflow-link]");
  if (!link || window.top === window || event.button !== 0 || event.ctrlKey || event.metaKey) {
    return;
  }
  try {
    const top = window.top;
    const idx = ((top.history.state && top.history.state.idx) || 0) + 1;
    const key = Math.random().toString(36).slice(2, 10);
    top.history.pushState({usr: null, key: key, idx: idx}, "", link.getAttribute("href"));
    top.dispatchEvent(new PopStateEvent("popstate", {state: top.history.state}));
    event.preventDefault();
  } catch (error) {
    // Not framed by a same-origin Airflow UI: the link opens in this frame.
  }
});
"""

_STYLE = """
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --muted: #6e7781;
  --line: rgba(127,127,127,.3); }
body { font: 14px/1.45 system-ui, sans-serif; margin: 16px 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 24px 0 8px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
table { border-collapse: collapse; margin-bottom: 8px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left;
  vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.muted { color: var(--muted); } .detail { max-width: 560px; overflow-wrap: anywhere; }
.badges span { display: inline-block; margin-right: 14px; }
details { margin: 4px 0 10px; }
"""


def _text(value: Any) -> str:
    if value is None:
        return "—"
    return escape(str(value))


def _cell(field: str, value: Any, *, numeric: bool = False, css: str = "") -> str:
    classes = " ".join(c for c in ("n" if numeric else "", css) if c)
    attr = f' class="{classes}"' if classes else ""
    return f'<td data-field="{field}"{attr}>{_text(value)}</td>'


def _status(ok: bool | None, good: str = "ok", bad: str = "failing") -> str:
    if ok is None:
        return '<span class="muted">never ran</span>'
    return f'<span class="ok">{good}</span>' if ok else f'<span class="bad">{bad}</span>'


def _link(url: str, label: str) -> str:
    return f'<a href="{escape(url)}" data-airflow-link target="_self">{escape(label)}</a>'


def _table(headers: Iterable[str], rows: Iterable[str], test_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(rows)
    return (
        f'<table data-testid="{test_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _sources_table(sources: list[Mapping[str, Any]]) -> str:
    rows = []
    for s in sources:
        last = s["last_reconcile"] or {}
        fresh = s["freshness"] or {}
        outcome = last.get("outcome")
        outcome_html = (
            '<span class="muted">none yet</span>'
            if not last
            else _status(outcome == "ok", "ok", escape(str(outcome)))
        )
        window = f"{_text(last.get('since'))} → {_text(last.get('until'))}" if last else "—"
        rows.append(
            f'<tr data-source="{escape(s["name"])}">'
            f"<td>{_link(s['dag_url'], s['name'])}</td>"
            f'<td data-field="window">{window}</td>'
            f'<td data-field="outcome">{outcome_html}</td>'
            + _cell("pulled", last.get("pulled"), numeric=True)
            + _cell("produced", last.get("produced"), numeric=True)
            + _cell("stored", last.get("stored"), numeric=True)
            + _cell("rejected", last.get("rejected"), numeric=True)
            + _cell("reconciled_at", last.get("reconciled_at"))
            + _cell("lag_total", s["lag"]["total"], numeric=True)
            + _cell("freshness_age_s", fresh.get("age_s"), numeric=True)
            + "</tr>"
        )
    headers = (
        "source (ingest DAG)",
        "last reconciled window",
        "outcome",
        "pulled",
        "produced",
        "stored",
        "rejected",
        "reconciled at",
        "consumer lag",
        "newest doc age s",
    )
    return _table(headers, rows, "sources")


def _lag_table(sources: list[Mapping[str, Any]]) -> str:
    rows = [
        f'<tr data-lag-source="{escape(s["name"])}" data-partition="{p["partition"]}">'
        f"<td>{escape(s['name'])}</td>"
        + _cell("topic", s["topic"])
        + _cell("partition", p["partition"], numeric=True)
        + _cell("committed", p["committed"], numeric=True)
        + _cell("high", p["high"], numeric=True)
        + _cell("lag", p["lag"], numeric=True)
        + _cell("member", p["member"])
        + f'<td data-field="member_live">{_status(p["member_live"], "live", "not live")}</td>'
        + "</tr>"
        for s in sources
        for p in s["lag"]["partitions"]
    ]
    if not rows:
        return '<p class="muted">No consumer member reports any partition.</p>'
    headers = (
        "source",
        "topic",
        "partition",
        "committed",
        "high watermark",
        "lag",
        "reported by",
        "member",
    )
    return _table(headers, rows, "lag")


def _reconcile_history(s: Mapping[str, Any]) -> str:
    name = escape(s["name"])
    runs = [
        "<tr>"
        + _cell("since", r["since"])
        + _cell("until", r["until"])
        + f'<td data-field="outcome">{_status(r["outcome"] == "ok", "ok", "failed")}</td>'
        + _cell("pulled", r["pulled"], numeric=True)
        + _cell("produced", r["produced"], numeric=True)
        + _cell("stored", r["stored"], numeric=True)
        + _cell("rejected", r["rejected"], numeric=True)
        + _cell("reconciled_at", r["reconciled_at"])
        + _cell("run_id", r["run_id"])
        + _cell("error", r["error"], css="detail")
        + "</tr>"
        for r in s["recent_reconciles"]
    ]
    if not runs:
        return ""
    headers = (
        "since",
        "until",
        "outcome",
        "pulled",
        "produced",
        "stored",
        "rejected",
        "reconciled at",
        "run",
        "error",
    )
    return (
        f'<details data-reconciles="{name}"><summary>{name}: topic {_text(s["topic"])} → '
        f"collection {_text(s['collection'])}, its latest reconciles ({len(runs)})</summary>"
        + _table(headers, runs, f"reconciles-{name}")
        + "</details>"
    )


def _health_table(health: list[Mapping[str, Any]]) -> str:
    rows = []
    for h in health:
        latest = h["latest"] or {}
        history = "".join(
            f'<li data-field="failure">{_text(f["at"])}: {_text(f["detail"])}'
            f' <span class="muted">(run {_text(f["dag_run_id"])}, '
            f"red pokes: {_text(f['failed_pokes'])}"
            f"{', recovered' if f['recovered'] else ''})</span></li>"
            for f in h["failures"]
        )
        rows.append(
            f'<tr data-check="{escape(h["check"])}">'
            f"<td>{escape(h['check'])}</td>"
            f'<td data-field="status">{_status(latest.get("ok") if latest else None)}</td>'
            + _cell("detail", latest.get("detail"), css="detail")
            + _cell("checked_at", latest.get("checked_at"))
            + f'<td data-field="failures">{len(h["failures"])}'
            + (f'<ul class="detail">{history}</ul>' if history else "")
            + "</td></tr>"
        )
    headers = ("check", "latest", "detail", "checked at", "recent failures")
    return _table(headers, rows, "health")


def _members_table(consumer: Mapping[str, Any]) -> str:
    rows = [
        f'<tr data-member="{escape(str(m["instance"]))}">'
        + _cell("instance", m["instance"])
        + f'<td data-field="live">{_status(m["live"], "live", "not live")}</td>'
        + _cell("phase", m["phase"])
        + _cell("age_s", m["age_s"], numeric=True)
        + _cell("assigned", m["assigned"], numeric=True)
        + _cell("lag_total", m["lag_total"], numeric=True)
        + _cell("last_error", m["last_error"], css="detail")
        + "</tr>"
        for m in consumer["members"]
    ]
    headers = ("member", "state", "phase", "heartbeat age s", "partitions", "lag", "last error")
    return _table(headers, rows, "members")


def render_page(summary: Mapping[str, Any], api_url: str = "api/summary") -> str:
    """The whole page for one summary."""
    o = summary["overview"]
    failing = o["checks_failing"]
    failed = o["failed_reconciles"]
    badges = (
        f'<span data-field="checks_failing">'
        f"{_status(not failing, 'all checks passing', 'checks failing')}"
        f"{': ' + escape(', '.join(failing)) if failing else ''}</span>"
        f'<span data-field="failed_reconciles">'
        f"{_status(not failed, 'every last reconcile ok', 'reconcile failed')}"
        f"{': ' + escape(', '.join(failed)) if failed else ''}</span>"
        f'<span data-field="members_live">{o["members_live"]} consumer members live</span>'
    )
    dags = " · ".join(_link(d["url"], d["dag_id"]) for d in summary["dags"])
    consumer = summary["consumer"]
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        f"<title>Headwater</title><style>{_STYLE}</style></head><body>"
        f"<h1>Headwater</h1>"
        f'<p class="muted">As of <span data-field="generated_at">{_text(summary["generated_at"])}'
        f"</span>, refreshed every {REFRESH_S} s · the same figures as JSON: "
        f'<a href="{escape(api_url)}">{escape(api_url)}</a></p>'
        f'<p class="badges">{badges}</p>'
        "<h2>Sources: last reconciled window</h2>"
        + _sources_table(summary["sources"])
        + "".join(_reconcile_history(s) for s in summary["sources"])
        + "<h2>Consumer lag per partition</h2>"
        + _lag_table(summary["sources"])
        + f"<h2>Consumer members (group {_text(consumer['group'])})</h2>"
        + _members_table(consumer)
        + "<h2>Health checks</h2>"
        + _health_table(summary["health"])
        + f'<h2>DAGs</h2><p data-testid="dags">{dags}</p>'
        + f"<script>{_NAVIGATE}</script></body></html>"
    )
