/**
 * The console's script, part 2 of 3 (SPEC.md §12.9 "Web console"): small SVG charts, drawn with
 * the elements of part 1 (script-core.ts): a bar, a list of bars, a sparkline of the pass rate while
 * the page is open (M2), and a verify latency histogram with the share under 100 ms (M4's target).
 */

export const SCRIPT_CHARTS = `
/* One horizontal bar for a fraction from 0 to 1. */
function bar(fraction, cls) {
  var f = Math.max(0, Math.min(1, fraction || 0));
  return h('svg:svg', { class: 'bar', viewBox: '0 0 100 6', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
    h('svg:rect', { x: 0, y: 0, width: 100, height: 6, class: 'track' }),
    h('svg:rect', { x: 0, y: 0, width: (f * 100).toFixed(2), height: 6, class: 'fill ' + (cls || '') }));
}

/* Labelled bars, the longest for the largest value. */
function barList(items, cls, empty) {
  if (!items.length) return h('p', { class: 'muted' }, empty || 'none');
  var max = Math.max.apply(null, [1].concat(items.map(function (i) { return i.value; })));
  return h('ul', { class: 'bars' }, items.map(function (i) {
    return h('li', { 'data-label': i.label }, h('span', { class: 'label' }, i.label), bar(i.value / max, i.cls || cls), h('span', { class: 'value' }, String(i.value)));
  }));
}

/* The pass rate at each poll while this page is open (the history is Prometheus's job; this shows the trend now). */
function sparkline(values) {
  if (values.length < 2) return h('p', { class: 'muted' }, 'The trend fills in while this page is open.');
  var points = values.map(function (v, i) {
    return (i * 100 / (values.length - 1)).toFixed(2) + ',' + (29 - v * 28).toFixed(2);
  }).join(' ');
  return h('svg:svg', { class: 'spark', viewBox: '0 0 100 30', preserveAspectRatio: 'none', role: 'img', 'aria-label': 'pass rate while this page is open' },
    h('svg:polyline', { points: points, class: 'line' }));
}

function passView(v, history) {
  var n = v.pass + v.reject;
  return [
    h('p', { class: 'figures' }, figure(n ? pct(v.pass / n) : '–', 'pass rate (M2)'), figure(v.pass, 'passed'), figure(v.reject, 'rejected')),
    sparkline(history),
  ];
}

/* Cumulative buckets to one column each; columns up to 100 ms are drawn as within target. */
function histogramChart(hst) {
  if (!hst.count) return h('p', { class: 'muted' }, 'None measured yet.');
  var per = hst.buckets.map(function (b, i) {
    return { le: b.le, n: b.count - (i ? hst.buckets[i - 1].count : 0) };
  });
  var max = Math.max.apply(null, [1].concat(per.map(function (b) { return b.n; })));
  var w = 100 / Math.max(1, per.length);
  var under = hst.buckets.filter(function (b) { return b.le <= 0.1; }).pop();
  var within = hst.count ? (under ? under.count : 0) / hst.count : 0;
  var columns = per.map(function (b, i) {
    var tall = (b.n / max) * 38;
    return h('svg:rect', { x: (i * w + 0.5).toFixed(2), width: Math.max(0.5, w - 1).toFixed(2), y: (40 - tall).toFixed(2), height: tall.toFixed(2), class: b.le <= 0.1 ? 'ok' : 'slow' },
      h('svg:title', null, 'up to ' + seconds(b.le) + ': ' + b.n));
  });
  return [
    h('svg:svg', { class: 'hist', viewBox: '0 0 100 40', preserveAspectRatio: 'none', role: 'img', 'aria-label': 'latency histogram' }, columns),
    h('p', { class: 'muted' }, hst.count + ' measured, mean ' + (hst.count ? seconds(hst.sum / hst.count) : '–') + ', ' + pct(within) + ' within 100 ms'),
  ];
}

var LATENCY_NAMES = {
  fwseal_device_verify_seconds: 'on devices',
  fwseal_server_verify_seconds: 'on the server (campaign create, root re-checks)',
};

function latencyView(list) {
  if (!list.length) return h('p', { class: 'muted' }, 'No verify latency measured yet (M4).');
  return list.map(function (hst) {
    var name = (hst.stage ? hst.stage + ' ' : '') + (LATENCY_NAMES[hst.metric] || hst.metric);
    return h('div', { class: 'latency' }, h('h3', null, 'Verify ' + name), histogramChart(hst));
  });
}

/* M8: devices that rejected a manifest, by code; and every refusal devices reported, by code and stage. */
function rejectionView(s) {
  var byCode = s.rejections.map(function (r) { return { label: r.code, value: r.devices }; });
  var refusals = s.refusals.map(function (r) { return { label: r.code + ' · ' + r.stage, value: r.count }; });
  return [
    h('h3', null, 'Devices that rejected a manifest'),
    barList(byCode, 'bad', 'No rejections.'),
    refusals.length ? [h('h3', null, 'Refusals reported, by code and stage'), barList(refusals, 'bad')] : null,
  ];
}

/* A campaign's devices by state, in the order of the rollout. */
function stateBars(counts) {
  var order = ['waiting', 'accepted', 'downloading', 'verifying', 'installed', 'confirmed', 'rejected', 'failed', 'timed-out', 'excluded'];
  var tone = { confirmed: 'ok', rejected: 'bad', failed: 'bad' };
  return barList(order.filter(function (k) { return counts[k]; }).map(function (k) { return { label: k, value: counts[k], cls: tone[k] }; }), '', 'No device in this campaign yet.');
}
`;
