/*
 * Server polls as reply-driven tick chains (workbench/polls.py): the spectrum, the teaching
 * views, a followed sweep and the runs list.
 *
 * The next tick is set only once the reply to the last one has arrived. A dcc.Interval fires
 * on its period regardless, and Dash discards a reply once a newer request of the same
 * callback has gone out: when the round trip outgrows the period (a loaded server), no reply
 * is ever shown. At most one tick is pending per poll; a reply missing for 60 s (a lost
 * request) sends the tick again. Each poll's clientside link calls
 * window.wbPolls.next(tickStoreId, reply, ms) when its reply store changes.
 */
(function () {
  'use strict';
  const LOST_MS = 60000;
  const polls = {};

  function send(id) {
    const p = polls[id];
    p.timer = null;
    p.n += 1;
    p.sentAt = performance.now();
    window.dash_clientside.set_props(id, {data: p.n});
  }

  function next(id, reply, ms) {
    const p = polls[id] || (polls[id] = {timer: null, n: 0, sentAt: 0, more: false});
    p.more = !!(reply && reply.more);
    p.sentAt = 0;  // answered
    if (p.more && p.timer === null) p.timer = setTimeout(function () { send(id); }, ms);
    return window.dash_clientside.no_update;
  }

  setInterval(function () {
    const now = performance.now();
    Object.keys(polls).forEach(function (id) {
      const p = polls[id];
      if (p.more && p.timer === null && p.sentAt && now - p.sentAt > LOST_MS) send(id);
    });
  }, 5000);

  window.wbPolls = {next: next};
})();
