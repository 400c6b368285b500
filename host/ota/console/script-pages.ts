/**
 * The console's script, part 3 of 3 (SPEC.md §12.9 "Web console"): the three pages, each drawn
 * from one API answer and drawn again at every poll (live updates without a reload), and the
 * campaign controls, shown only to a role that may use them (the server refuses the others anyway:
 * 403 FORBIDDEN, shown with its code).
 */

export const SCRIPT_PAGES = `
var ENDED = ['confirmed', 'rejected', 'failed', 'timed-out', 'excluded'];
var passHistory = [];

function progress(c) {
  var ended = ENDED.reduce(function (n, k) { return n + (c.counts[k] || 0); }, 0);
  var of = c.counts.eligible || 0;
  return h('span', { class: 'progress', 'data-ended': ended, 'data-eligible': of },
    h('meter', { min: 0, max: Math.max(1, of), value: ended }), ' ' + ended + ' of ' + of);
}

function failureRate(c) {
  var over = c.failureRate > c.abortFailureRate;
  return h('span', { class: over ? 'bad' : null }, pct(c.failureRate) + ' (halts above ' + pct(c.abortFailureRate) + ')');
}

function fleetView(f) {
  var rows = f.versions.map(function (v) {
    var name = v.version === null ? h('span', { class: 'muted' }, 'not reported') : mono(v.version);
    return { cells: [name, v.online, v.offline, bar((v.online + v.offline) / Math.max(1, f.scanned))] };
  });
  return [
    h('p', { class: 'figures' }, figure(f.known, 'known'), figure(f.online, 'online'), figure(f.offline, 'offline')),
    f.complete ? null : h('p', { class: 'muted' }, 'Versions of the first ' + f.scanned + ' devices.'),
    table(['Version', 'Online', 'Offline', 'Share'], rows, 'No device has reported yet.'),
  ];
}

function rootView(r) {
  var list = function (rows) {
    return barList(rows.map(function (x) { return { label: x.version === null ? 'not reported' : listVersion(x.version), value: x.devices }; }), '', 'No device has reported one.');
  };
  var known = r.trustVersions.reduce(function (n, x) { return n + x.devices; }, 0);
  var newest = r.trustVersions.filter(function (x) { return x.version === r.trustVersion; }).reduce(function (n, x) { return n + x.devices; }, 0);
  var enforce = r.revocationVersion
    ? [figure(r.enforcing + ' of ' + r.online, 'online devices enforce the list'), r.online ? h('meter', { min: 0, max: r.online, value: r.enforcing }) : null]
    : h('p', { class: 'muted' }, 'No revocation list published.');
  return [
    h('p', { class: 'figures' },
      figure('v' + r.trustVersion, 'trust bundle'),
      figure(listVersion(r.revocationVersion), 'revocation list'),
      figure(newest + ' of ' + known, 'devices run the newest bundle')),
    enforce,
    h('h3', null, 'Devices by trust bundle version'),
    list(r.trustVersions),
    h('h3', null, 'Devices by revocation list version'),
    list(r.revocationVersions),
  ];
}

function campaignsView(c) {
  var states = Object.keys(c.states).filter(function (s) { return c.states[s]; }).map(function (s) { return c.states[s] + ' ' + s; });
  var rows = c.shown.map(function (x) {
    return { attrs: { 'data-campaign': x.id }, cells: [link('campaigns', x.id), x.group, mono(x.version), badge(x.state), x.wave + ' of ' + x.waves.length, progress(x), failureRate(x)] };
  });
  return [
    h('p', { class: 'muted' }, states.length ? states.join(' · ') : 'No campaign yet.'),
    table(['Campaign', 'Group', 'Version', 'State', 'Wave', 'Progress', 'Failure rate'], rows, 'No campaign yet.'),
  ];
}

async function overviewPage() {
  var o = await api('GET', '/api/overview');
  var v = o.slis.verifications;
  if (v.pass + v.reject > 0) {
    passHistory.push(v.pass / (v.pass + v.reject));
    if (passHistory.length > 120) passHistory.shift();
  }
  document.title = 'Overview · fwseal console';
  return h('div', { class: 'page', id: 'overview' },
    h('div', { class: 'grid' },
      card('Fleet', fleetView(o.fleet), 'fleet'),
      card('Root of trust', rootView(o.root), 'root'),
      card('Verification pass rate', passView(v, passHistory), 'pass-rate'),
      card('Verify latency', latencyView(o.slis.latency), 'latency'),
      card('Rejections by code', rejectionView(o.slis), 'rejections')),
    card('Campaigns', campaignsView(o.campaigns), 'campaigns'));
}

function controlButton(c, action, label, cls) {
  return h('button', {
    type: 'button',
    class: cls || null,
    'data-action': action,
    onclick: async function (ev) {
      if (action === 'abort' && !window.confirm('Abort campaign ' + c.id + ' for good?')) return;
      ev.currentTarget.disabled = true;
      try {
        await api('POST', '/api/campaigns/' + encodeURIComponent(c.id) + '/' + action);
        clearError('action');
      } catch (e) {
        if (e.status === 401) return signIn(e);
        showError(e, 'action');
      }
      refresh();
    },
  }, label);
}

/* The operator's controls, each only where the campaign's state allows it (SPEC.md §12.9). */
function controls(c) {
  if (!canOperate()) {
    return h('p', { class: 'muted', id: 'read-only' }, 'Read-only: the token ' + me.name + ' has the role ' + me.role + '; pause, resume, abort and next need operator.');
  }
  var b = [];
  if (c.state === 'running') b.push(controlButton(c, 'pause', 'Pause'));
  if (c.state === 'paused' || c.state === 'halted') b.push(controlButton(c, 'resume', 'Resume'));
  if (c.state === 'running' && c.waitingFor === 'operator') b.push(controlButton(c, 'next', 'Open the next wave'));
  if (c.state !== 'completed' && c.state !== 'aborted') b.push(controlButton(c, 'abort', 'Abort', 'danger'));
  return b.length ? h('div', { class: 'controls', id: 'controls' }, b) : null;
}

function haltReason(c) {
  var e = c.events.filter(function (x) { return x.action === 'halt'; }).pop();
  return e ? e.detail : c.haltCode !== null ? codeText(c.haltCode) : 'by the server';
}

/* At most DEVICES_SHOWN rows: a page stays quick with a large group (the API and the CLI have them all). */
var DEVICES_SHOWN = 500;

function campaignDevices(c) {
  var more = c.devices.length > DEVICES_SHOWN ? h('p', { class: 'muted' }, (c.devices.length - DEVICES_SHOWN) + ' more devices: see fwseal campaign status ' + c.id + ' --json.') : null;
  return [table(['Device', 'State', 'Progress', 'Code', 'Trust', 'Revocation', 'Updated'], c.devices.slice(0, DEVICES_SHOWN).map(function (d) {
    var done = d.total ? d.done + ' of ' + d.total : '';
    return { attrs: { 'data-device': d.id }, cells: [link('devices', d.id), badge(d.state), done, codeText(d.code), d.trustVersion === null ? '–' : 'v' + d.trustVersion, listVersion(d.revocationVersion), d.updated === null ? '–' : ago(d.updated)] };
  }), 'No device of the open waves yet.'), more];
}

function eventList(events) {
  return h('ol', { class: 'events' }, events.slice().reverse().map(function (e) {
    return h('li', null, h('time', null, when(e.at)), ' ', h('b', null, e.action), ' by ', mono(e.actor), e.detail ? [': ', e.detail] : null);
  }));
}

async function campaignPage() {
  var c = await api('GET', '/api/campaigns/' + encodeURIComponent(PAGE_ID));
  document.title = 'Campaign ' + c.id + ' · fwseal console';
  var waves = c.waves.join('%, ') + '%';
  return h('div', { class: 'page', id: 'campaign', 'data-state': c.state },
    h('h1', null, 'Campaign ', mono(c.id), ' ', badge(c.state, 'campaign-state')),
    c.state === 'halted' ? h('p', { class: 'alert', id: 'halted' }, 'Halted: ', haltReason(c)) : null,
    controls(c),
    h('div', { class: 'grid' },
      card('Rollout', facts([
        ['Group', c.group],
        ['Version', mono(c.version)],
        ['Security counter', c.securityCounter],
        ['Wave', h('span', { id: 'wave' }, c.wave + ' of ' + c.waves.length + ' (' + waves + ')')],
        ['Waiting for', c.waitingFor || '–'],
        ['Progress', progress(c)],
        ['Failure rate', failureRate(c)],
        ['Updated', when(c.updated)],
      ]), 'rollout'),
      card('Devices by state', stateBars(c.counts), 'states')),
    card('Devices', campaignDevices(c), 'devices'),
    card('Events', eventList(c.events), 'events'));
}

async function devicePage() {
  var d = await api('GET', '/api/devices/' + encodeURIComponent(PAGE_ID));
  document.title = 'Device ' + d.id + ' · fwseal console';
  var last = d.lastError ? [codeText(d.lastError.code), d.lastError.campaign ? [' in ', link('campaigns', d.lastError.campaign)] : null] : 'none';
  var history = d.campaigns.slice().reverse().map(function (x) {
    return { cells: [link('campaigns', x.campaign), mono(x.version), badge(x.campaignState), badge(x.state), x.total ? x.done + ' of ' + x.total : '', codeText(x.code), when(x.updated)] };
  });
  return h('div', { class: 'page', id: 'device' },
    h('h1', null, 'Device ', mono(d.id), ' ', badge(d.online ? 'online' : 'offline', 'presence')),
    card('Device', facts([
      ['Group', d.group],
      ['Version', d.version === null ? '–' : h('span', { class: 'mono', id: 'device-version' }, d.version)],
      ['Security counter', d.counter === null ? '–' : d.counter],
      ['Last seen', when(d.lastSeen) + ' (' + ago(d.lastSeen) + ')'],
      ['Trust bundle', d.trustVersion === null ? '–' : 'v' + d.trustVersion],
      ['Revocation list', listVersion(d.revocationVersion)],
      ['Last error', last],
    ]), 'facts'),
    card('History', table(['Campaign', 'Version', 'Campaign state', 'Device state', 'Progress', 'Code', 'Updated'], history, 'No campaign yet.'), 'history'));
}

var PAGES = { overview: overviewPage, campaign: campaignPage, device: devicePage };
var timer = null;
var drawn = 0;

function stop() {
  clearTimeout(timer);
  timer = null;
}

/* Fetch, draw, wait, again: the page follows the fleet without a reload. A late answer never replaces a newer one. */
async function refresh() {
  stop();
  var mine = ++drawn;
  try {
    var view = await PAGES[PAGE]();
    if (mine !== drawn || me === null) return;
    main.replaceChildren(view);
    clearError('load');
  } catch (e) {
    if (mine !== drawn) return;
    if (e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      return signIn(e);
    }
    showError(e, 'load');
  }
  timer = setTimeout(refresh, PAGE === 'overview' ? 3000 : 1500);
}

document.getElementById('signout').addEventListener('click', signOut);
document.addEventListener('visibilitychange', function () {
  if (document.hidden) stop();
  else if (me !== null) refresh();
});
start();
`;
