// toolgate approvals: keeps "time left" ticking and the pending list live
// (polls /ui/approvals/live; the server answers 304 while nothing changed).
// The page works without this script. No build step, no dependencies.
'use strict';
(function () {
  var POLL_MS = 3000;

  function left(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll('time.left[data-expires]').forEach(function (t) {
      var ms = Number(t.getAttribute('data-expires')) - now;
      t.textContent = ms > 0 ? left(ms) : 'expired';
    });
  }

  function status(message) {
    var p = document.querySelector('#pending .live');
    if (p) p.textContent = message;
  }

  // Someone is writing a comment or has focus in the list: do not pull
  // the form from under them.
  function busy(section) {
    if (section.contains(document.activeElement) && document.activeElement !== document.body) return true;
    return Array.prototype.some.call(section.querySelectorAll('textarea'), function (t) {
      return t.value.trim() !== '';
    });
  }

  var stale = null;
  function poll() {
    var section = document.getElementById('pending');
    if (!section) return;
    var version = section.getAttribute('data-version') || '';
    fetch('/ui/approvals/live', {
      headers: { 'If-None-Match': '"' + version + '"' },
      credentials: 'same-origin',
      cache: 'no-store',
    }).then(function (r) {
      if (r.status === 304) return null;
      if (r.status === 401) {
        status('Your session has ended: reload the page to sign in again.');
        return null;
      }
      if (!r.ok) {
        status('Cannot refresh the list right now (' + r.status + '); still trying.');
        return null;
      }
      return r.text();
    }).then(function (html) {
      if (html === null || html === undefined) return;
      if (busy(section)) {
        stale = html;
        status('The list has changed; it refreshes when you leave this form.');
        return;
      }
      replace(section, html);
    }).catch(function () {
      status('Cannot reach toolgate right now; still trying.');
    });
  }

  function replace(section, html) {
    var holder = document.createElement('div');
    holder.innerHTML = html; // server-rendered, every value escaped
    var fresh = holder.querySelector('#pending');
    if (!fresh) return;
    section.replaceWith(fresh);
    stale = null;
    tick();
  }

  document.addEventListener('focusout', function () {
    setTimeout(function () {
      var section = document.getElementById('pending');
      if (stale && section && !busy(section)) replace(section, stale);
    }, 0);
  });

  tick();
  setInterval(tick, 1000);
  setInterval(poll, POLL_MS);
})();
