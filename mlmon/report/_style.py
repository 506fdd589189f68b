"""The report's style sheet, inlined in the page (no file, no network)."""

CSS = """
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f6f7f9;--card:#fff;--bad:#dc2626;--warn:#d97706;--fleet:#1d4ed8}
*{box-sizing:border-box}
body{margin:0;padding:0 24px 32px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:18px 0 6px}
h1{font-size:22px;margin:0 0 4px;font-weight:600}
h1 .version{font-size:14px;color:var(--muted);font-weight:400;margin-left:8px}
h2{font-size:17px;margin:26px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:14px;margin:0;font-weight:600}
.range,.metric,.note,.sub,.seg-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px}
.seg-card h3{overflow-wrap:anywhere}.seg-card.other{border-style:dashed}
.seg-chart{margin-top:6px}.seg-chart .metric{margin:0}
.cards.seg-book{margin:0 0 12px}
footer{color:var(--muted)}
.range{margin:0 0 8px}
nav a{display:inline-block;margin:0 14px 0 0;color:#2563eb;text-decoration:none;font-size:13px}
nav a.empty{color:var(--muted)}
.notes{background:#fffbeb;border:1px solid #fcd34d;border-radius:8px;padding:10px 14px 10px 30px;margin:8px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px;margin-top:14px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.stat .label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}
.stat .value{font-size:24px;font-weight:600;margin:2px 0;font-variant-numeric:tabular-nums}
.stat .sub{font-size:12px}
.stat.bad{border-left:4px solid var(--bad)}.stat.bad .value{color:var(--bad)}
.stat.warn{border-left:4px solid var(--warn)}
.stat.fleet{border-left:4px solid var(--fleet)}
.charts>.wide{grid-column:1/-1}
section#fleet>h2{border-left:4px solid var(--fleet);padding-left:8px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.charts.full{grid-template-columns:1fr}
figure{margin:0}
figcaption{margin-bottom:6px}
.metric{font:11px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;margin:2px 0 0}
svg.chart{width:100%;height:auto;display:block;font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:#374151}
svg .plot-bg{fill:#fcfcfd}
svg .grid{stroke:#eceef1;stroke-width:1}
svg .axis-line,svg .tick{stroke:#9ca3af;stroke-width:1}
svg .band{fill:#f9fafb}svg .band.odd{fill:#fff}
svg .scale-note{fill:#9ca3af;font-style:italic}
section.empty .note{margin:0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:500}
tr.firing td:nth-child(3){color:var(--bad);font-weight:600}
tr.pending td:nth-child(3){color:var(--warn)}
tr.status-drift td:last-child{color:var(--bad);font-weight:600}
tr.status-warning td:last-child{color:var(--warn)}
.table-card{margin-top:12px;overflow-x:auto}
.seg-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px}
.seg-card h3{overflow-wrap:anywhere}.seg-card.other{border-style:dashed}
.seg-chart{margin-top:6px}.seg-chart .metric{margin:0}
.cards.seg-book{margin:0 0 12px}
footer{margin-top:30px;font-size:12px;border-top:1px solid var(--line);padding-top:10px}
"""
