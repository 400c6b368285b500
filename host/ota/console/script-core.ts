/**
 * The console's script, part 1 of 3 (SPEC.md §12.9 "Web console"): building elements, calling the
 * API, signing in. Plain JavaScript for the browser, served as one file (script.ts) from the
 * server's own origin; no framework, no build step.
 *
 * Safety rules this part gives the rest: every value from the API becomes a text node or an
 * attribute set with setAttribute (never parsed as HTML; the page's Trusted Types policy would refuse
 * a string sent to innerHTML anyway); a link only ever points to a path of this server; the token is
 * read from sessionStorage and sent only as an Authorization header to this origin (never in a URL,
 * never in a cookie, so no other site's request can carry it).
 */

export const SCRIPT_CORE = String.raw`
var SVG_NS = 'http://www.w3.org/2000/svg';
var TOKEN_KEY = 'fwseal.console.token';
var PAGE = document.body.dataset.page;
var PAGE_ID = document.body.dataset.id;
var main = document.getElementById('main');
var banner = document.getElementById('banner');
var me = null;

function append(el, c) {
  if (c === null || c === undefined || c === false) return;
  if (Array.isArray(c)) {
    for (var i = 0; i < c.length; i++) append(el, c[i]);
    return;
  }
  el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
}

/* An element: attributes one by one, children as nodes or text. Event handlers are listeners, never attributes. */
function h(tag, attrs) {
  var svg = tag.indexOf('svg:') === 0;
  var el = svg ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  var a = attrs || {};
  Object.keys(a).forEach(function (k) {
    var v = a[k];
    if (v === null || v === undefined || v === false) return;
    if (k === 'onclick' || k === 'onsubmit') return el.addEventListener(k.slice(2), v);
    if (/^on/i.test(k)) throw new Error('no handler attributes');
    if (k === 'href' && !/^\/(?!\/)/.test(String(v))) return;
    el.setAttribute(k, v === true ? '' : String(v));
  });
  for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
  return el;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/* One API call; a refusal throws with the server's code name and number (SPEC.md §9). */
async function api(method, path) {
  var headers = { accept: 'application/json' };
  var t = token();
  if (t) headers.authorization = 'Bearer ' + t;
  var r = await fetch(path, { method: method, headers: headers, cache: 'no-store', credentials: 'omit', redirect: 'error' });
  var data = null;
  try {
    data = await r.json();
  } catch (e) {
    data = null;
  }
  if (!r.ok) {
    var err = new Error(data && typeof data.detail === 'string' ? data.detail : 'HTTP ' + r.status);
    err.status = r.status;
    err.codeName = data && data.error;
    err.code = data && data.code;
    throw err;
  }
  return data;
}

/* An error in the banner: the code name and number first (what an operator searches for), then the detail. */
function showError(e, kind) {
  var head = e.codeName ? e.codeName + ' (code ' + e.code + ')' : 'Error';
  banner.replaceChildren(h('strong', { class: 'code', id: 'error-code' }, head), ' ', h('span', null, e.message));
  banner.dataset.kind = kind;
  banner.hidden = false;
}

function clearError(kind) {
  if (kind && banner.dataset.kind !== kind) return;
  banner.hidden = true;
  banner.replaceChildren();
}

var pct = function (x) {
  return (x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0) + '%';
};
var seconds = function (s) {
  return s < 1 ? Math.round(s * 1000 * 10) / 10 + ' ms' : Math.round(s * 100) / 100 + ' s';
};
var when = function (ms) {
  return ms === null || ms === undefined ? '–' : new Date(ms).toLocaleString();
};
function ago(ms) {
  var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  return s < 86400 ? Math.round(s / 3600) + ' h ago' : Math.round(s / 86400) + ' d ago';
}
var codeText = function (c) {
  return c === null || c === undefined ? '' : (CODE_NAMES[c] || 'UNKNOWN') + ' (code ' + c + ')';
};
var listVersion = function (v) {
  return v === null || v === undefined ? '–' : v === 0 ? 'none' : 'v' + v;
};
var mono = function (text) {
  return h('span', { class: 'mono' }, text);
};
var badge = function (state, id) {
  return h('span', { class: 'badge s-' + String(state).replace(/[^a-z-]/g, ''), 'data-state': state, id: id || null }, state);
};
var card = function (title, content, id) {
  return h('section', { class: 'card', id: id || null }, h('h2', null, title), content);
};
var link = function (kind, id) {
  return h('a', { href: '/' + kind + '/' + encodeURIComponent(id) }, mono(id));
};
var figure = function (value, label) {
  return h('span', { class: 'figure' }, h('b', null, value), h('span', null, label));
};
function facts(rows) {
  return h('dl', { class: 'facts' }, rows.map(function (r) {
    return [h('dt', null, r[0]), h('dd', null, r[1])];
  }));
}

/* A table that becomes a list of labelled rows on a narrow screen (each cell carries its column name). */
function table(cols, rows, empty) {
  var body = rows.length
    ? rows.map(function (r) {
        return h('tr', r.attrs || null, r.cells.map(function (c, i) {
          return h('td', { 'data-label': cols[i] }, h('span', { class: 'cell' }, c));
        }));
      })
    : h('tr', null, h('td', { colspan: cols.length, class: 'muted' }, empty || 'none'));
  return h('table', { class: 'rows' }, h('thead', null, h('tr', null, cols.map(function (c) {
    return h('th', { scope: 'col' }, c);
  }))), h('tbody', null, body));
}

function signIn(err) {
  stop();
  me = null;
  document.getElementById('signout').hidden = true;
  document.getElementById('who').replaceChildren();
  var input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true });
  var form = h('form', {
    id: 'signin',
    class: 'card signin',
    onsubmit: function (ev) {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = '';
      start();
    },
  },
    h('h1', null, 'Sign in'),
    h('label', { for: 'token' }, 'API token'),
    input,
    h('button', { type: 'submit', id: 'signin-submit' }, 'Sign in'),
    h('p', { class: 'muted' }, 'A token from fwseal token create. It stays in this browser tab (sessionStorage) and goes only to this server, as an Authorization header; closing the tab forgets it.'));
  main.replaceChildren(form);
  if (err) showError(err, 'signin');
  else clearError();
  input.focus();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  signIn(null);
}

var canOperate = function () {
  return me !== null && (me.role === 'operator' || me.role === 'admin');
};

function showWho() {
  var who = document.getElementById('who');
  who.replaceChildren(me.source === 'api-open' ? 'open API (no tokens)' : me.name + ' · ' + me.role);
  who.dataset.role = me.role;
  document.getElementById('signout').hidden = me.source === 'api-open';
}

/* Who am I: an open API needs no sign-in; a missing or refused token shows the sign-in form. */
async function start() {
  stop();
  try {
    me = await api('GET', '/api/whoami');
  } catch (e) {
    if (e.status !== 401) return showError(e, 'load');
    var tried = token() !== null;
    sessionStorage.removeItem(TOKEN_KEY);
    return signIn(tried ? e : null);
  }
  clearError();
  showWho();
  refresh();
}
`;
