/**
 * The console's style sheet (`GET /console/app.css`, SPEC.md §12.9 "Web console"): readable on a
 * laptop and a phone. Cards flow into as many columns as fit; below 640 px every table becomes a list
 * of labelled rows and long ids and versions wrap, so nothing scrolls sideways at 390 px. Light and
 * dark follow the system.
 */
export const CONSOLE_STYLE = `:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --fg: #1b1f24; --muted: #5b6470; --card: #fff; --line: #d9dee4;
  --accent: #1f6feb; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --muted: #8b949e; --card: #161b22; --line: #30363d; --accent: #4493f8; --ok: #3fb950; --bad: #f85149; --warn: #d29922; }
}
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
a { color: var(--accent); }
.top { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem 1rem; padding: .6rem 1rem; background: var(--card); border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; color: inherit; text-decoration: none; margin-right: auto; }
.who { color: var(--muted); font-size: .9em; overflow-wrap: anywhere; }
main { max-width: 76rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.35rem; margin: .2rem 0 .8rem; overflow-wrap: anywhere; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
h3 { font-size: .85rem; margin: .8rem 0 .3rem; color: var(--muted); font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 20rem), 1fr)); gap: 1rem; margin-bottom: 1rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .9rem 1rem; min-width: 0; margin-bottom: 1rem; }
.grid > .card { margin-bottom: 0; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .92em; overflow-wrap: anywhere; }
.muted { color: var(--muted); }
.bad { color: var(--bad); font-weight: 600; }
.figures { display: flex; flex-wrap: wrap; gap: .4rem 1.4rem; margin: 0 0 .6rem; }
.figure b { display: block; font-size: 1.4rem; overflow-wrap: anywhere; }
.figure > span { color: var(--muted); font-size: .85em; }
table.rows { width: 100%; border-collapse: collapse; font-size: .92em; }
table.rows th, table.rows td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: middle; overflow-wrap: anywhere; }
table.rows th { color: var(--muted); font-weight: 600; overflow-wrap: normal; white-space: nowrap; }
.cell { display: block; min-width: 0; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-size: .8rem; font-weight: 600; border: 1px solid currentColor; white-space: nowrap; }
.s-running, .s-accepted, .s-downloading, .s-verifying, .s-installed { color: var(--accent); }
.s-completed, .s-confirmed, .s-online { color: var(--ok); }
.s-halted, .s-rejected, .s-failed { color: var(--bad); }
.s-paused, .s-waiting, .s-timed-out, .s-excluded, .s-aborted, .s-offline { color: var(--muted); }
.alert, .banner { border: 1px solid var(--bad); color: var(--bad); background: color-mix(in srgb, var(--bad) 8%, transparent); padding: .6rem .8rem; border-radius: 6px; overflow-wrap: anywhere; }
.banner { margin: .8rem auto 0; max-width: 74rem; }
.banner[hidden] { display: none; }
button { font: inherit; padding: .4rem .9rem; border-radius: 6px; border: 1px solid var(--line); background: var(--card); color: var(--fg); cursor: pointer; }
button:disabled { opacity: .5; cursor: default; }
button.danger { border-color: var(--bad); color: var(--bad); }
.controls { display: flex; flex-wrap: wrap; gap: .5rem; margin-bottom: 1rem; }
meter { width: 7rem; max-width: 100%; height: .8rem; vertical-align: middle; }
svg.bar { width: 100%; height: .6rem; display: block; }
svg.bar .track { fill: var(--line); }
svg.bar .fill { fill: var(--accent); }
svg.bar .fill.bad { fill: var(--bad); }
svg.bar .fill.ok { fill: var(--ok); }
svg.spark { width: 100%; height: 3rem; display: block; }
svg.spark .line { fill: none; stroke: var(--ok); stroke-width: 2; vector-effect: non-scaling-stroke; }
svg.hist { width: 100%; height: 4rem; display: block; }
svg.hist .ok { fill: var(--ok); }
svg.hist .slow { fill: var(--warn); }
ul.bars { list-style: none; padding: 0; margin: 0; }
ul.bars li { display: grid; grid-template-columns: minmax(0, 11rem) minmax(3rem, 1fr) auto; gap: .6rem; align-items: center; padding: .15rem 0; }
ul.bars .label { overflow-wrap: anywhere; font-size: .9em; }
dl.facts { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: .3rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; min-width: 0; }
ol.events { margin: 0; padding-left: 1.2rem; font-size: .92em; overflow-wrap: anywhere; }
ol.events time { color: var(--muted); }
.signin { max-width: 28rem; margin: 2rem auto; display: grid; gap: .6rem; }
.signin input { font: inherit; padding: .5rem; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); width: 100%; }
@media (max-width: 640px) {
  main { padding: .6rem; }
  .banner { margin: .6rem .6rem 0; }
  table.rows thead { display: none; }
  table.rows, table.rows tbody, table.rows tr, table.rows td { display: block; width: 100%; }
  table.rows tr { border-bottom: 1px solid var(--line); padding: .3rem 0; }
  table.rows td { border: 0; padding: .15rem 0; display: grid; grid-template-columns: minmax(0, 7.5rem) minmax(0, 1fr); gap: .5rem; align-items: center; }
  table.rows td::before { content: attr(data-label); color: var(--muted); font-size: .85em; }
  dl.facts { grid-template-columns: minmax(0, 8rem) minmax(0, 1fr); }
  ul.bars li { grid-template-columns: minmax(0, 8rem) minmax(2rem, 1fr) auto; }
}
`;
