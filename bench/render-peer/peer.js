// peer.js — the Node.js peer of bench/render: the same messages built with npm `mustache` and
// nodemailer's MailComposer, one core, for SECONDS; prints one JSON line like bench_render.
// Usage: node peer.js TEMPLATES_DIR [SECONDS] [RECIPIENTS]
// The campaign facts below are those of campaigns/messenger-upgrade.cfg; the recipients are the
// list bench_render.c builds; templates are picked with the same locale fallback (the template
// folder as a unit, partials per file from the template's locale); dates come from Intl with a
// cache per (time zone, language), an unsubscribe token per message, as in C.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const Mustache = require('mustache');
const MailComposerModule = require('nodemailer/lib/mail-composer');
const MailComposer = MailComposerModule.default || MailComposerModule;

const dir = process.argv[2];
const seconds = Number(process.argv[3] || 5);
const count = Number(process.argv[4] || 10000);

const campaign = {
  name: 'messenger-upgrade', title: 'MSN Messenger service upgrade',
  from: { name: 'MSN Messenger Team', address: 'messenger-upgrade@msn.example.test' },
  replyTo: 'MSN Messenger Support <messenger-support@msn.example.test>',
  timezone: 'America/Los_Angeles', upgradeUrl: 'https://messenger.example.test/upgrade',
  unsubscribeUrl: 'https://messenger.example.test/unsubscribe',
  announce: Date.UTC(2003, 7, 18, 16) / 1000, reminderStart: Date.UTC(2003, 8, 18, 7) / 1000,
  cutoff: Date.UTC(2003, 9, 15, 7) / 1000,
  clientNames: { 'msn-messenger': 'MSN Messenger', 'windows-messenger': 'Windows Messenger',
    trillian: 'Trillian' },
};
const segments = {
  'msn-windows': { template: 'upgrade', target: '5.0' },
  'windows-messenger': { template: 'upgrade', target: '4.7.2009' },
  'mac-os9': { template: 'upgrade-mac-os9', target: '2.5.1',
    url: 'https://messenger.example.test/upgrade/mac-os9' },
  'mac-osx': { template: 'upgrade', target: '3.5', url: 'https://messenger.example.test/upgrade/mac' },
  'mac-os8': { template: 'discontinued-mac-os8', target: null },
  'msn-companion': { template: 'discontinued-companion', target: null },
  'third-party': { template: 'third-party', target: null },
};
const people = [
  ['en-US', 'America/New_York', 'John Smith', 'US'], ['en-GB', 'Europe/London', 'Amelia Clarke', 'GB'],
  ['fr-FR', 'Europe/Paris', 'François Dubois', 'FR'], ['de-DE', 'Europe/Berlin', 'Jürgen Müller', 'DE'],
  ['pt-BR', 'America/Sao_Paulo', 'João Silva', 'BR'], ['es-ES', 'Europe/Madrid', 'María Núñez', 'ES'],
  ['ja-JP', 'Asia/Tokyo', '山田 太郎', 'JP'], ['it-IT', 'Europe/Rome', 'Giovanni Rossi', 'IT'],
  ['nl-NL', 'Europe/Amsterdam', '', 'NL'], ['en-US', 'America/Los_Angeles', "Chris O'Neil", 'US'],
];
const clients = [
  ['msn-messenger', '4.6', 'windows', 'XP', 'msn-windows'],
  ['windows-messenger', '4.7.300', 'windows', 'XP', 'windows-messenger'],
  ['msn-messenger', '2.5', 'mac', '9.2.2', 'mac-os9'], ['msn-messenger', '3.0', 'mac', '10.2.6', 'mac-osx'],
  ['msn-messenger', '2.0', 'mac', '8.6', 'mac-os8'], ['msn-messenger', '1.0', 'msn-companion', '', 'msn-companion'],
  ['trillian', '2.0', 'windows', 'XP', 'third-party'],
];
const secret = Buffer.from('bench secret, 32 bytes long ....');

// ---- templates: locale folders, folder-level fallback, partials per file ----
const templateNames = new Set(Object.values(segments).map((s) => s.template));
const locales = fs.readdirSync(dir).filter((n) => /^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$/.test(n) &&
  !templateNames.has(n) && fs.statSync(path.join(dir, n)).isDirectory());
function chain(tag) {
  const out = [];
  for (let t = tag || ''; t; t = t.includes('-') ? t.slice(0, t.lastIndexOf('-')) : '') {
    const f = locales.find((l) => l.toLowerCase() === t.toLowerCase());
    if (f) out.push(f);
  }
  return out;
}
function readIf(p) { return fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : null; }
const sets = new Map(); // "template|locale" -> {subject, text, html, partials, locale}
function loadSet(name, locale) {
  const base = locale ? path.join(dir, locale, name) : path.join(dir, name);
  if (!fs.existsSync(base)) return null;
  const partials = {};
  for (const d of [...chain(locale).map((l) => path.join(dir, l, 'partials')), path.join(dir, 'partials')]) {
    if (!fs.existsSync(d)) continue;
    for (const f of fs.readdirSync(d)) {
      const key = f.replace(/\.mustache$/, '');
      if (!(key in partials)) partials[key] = fs.readFileSync(path.join(d, f), 'utf8');
    }
  }
  const set = { locale: locale || 'en', partials, subject: readIf(path.join(base, 'subject.mustache')).trimEnd(),
    text: readIf(path.join(base, 'text.mustache')), html: readIf(path.join(base, 'html.mustache')) };
  for (const t of [set.subject, set.text, set.html]) if (t) Mustache.parse(t);
  return set;
}
for (const name of templateNames) {
  sets.set(name + '|', loadSet(name, null));
  for (const l of locales) { const s = loadSet(name, l); if (s) sets.set(name + '|' + l, s); }
}
function pick(name, tag) {
  for (const l of chain(tag)) { const s = sets.get(name + '|' + l); if (s) return s; }
  return sets.get(name + '|');
}

// ---- dates: cached per (time zone, language) ----
const zones = new Map();
function sameLanguage(a, b) { return (a || '').split('-')[0].toLowerCase() === (b || '').split('-')[0].toLowerCase(); }
function localDay(fmt, t) {
  const p = Object.fromEntries(fmt.formatToParts(new Date(t * 1000)).map((x) => [x.type, x.value]));
  return Date.UTC(+p.year, +p.month - 1, +p.day) / 86400000;
}
function zone(tz, lang, now) {
  const key = tz + '|' + lang;
  let z = zones.get(key);
  if (!z) {
    const long = new Intl.DateTimeFormat(lang, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric', timeZone: tz });
    const time = new Intl.DateTimeFormat(lang, { hour: 'numeric', minute: '2-digit', timeZone: tz });
    const ymd = new Intl.DateTimeFormat('en-US', { year: 'numeric', month: 'numeric', day: 'numeric', timeZone: tz });
    z = { ymd, cutoffDate: long.format(new Date(campaign.cutoff * 1000)),
      cutoffTime: time.format(new Date(campaign.cutoff * 1000)),
      reminderStartDate: long.format(new Date(campaign.reminderStart * 1000)),
      cutoffDay: localDay(ymd, campaign.cutoff), lastNow: null, daysLeft: 0 };
    zones.set(key, z);
  }
  if (z.lastNow !== now) {
    z.daysLeft = now >= campaign.cutoff ? 0 : Math.max(0, z.cutoffDay - localDay(z.ymd, now));
    z.lastNow = now;
  }
  return z;
}

// ---- one message ----
const noEscape = { escape: (s) => String(s) };
function stamp(t) { return new Date(t * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14); }
function build(r, now) {
  const seg = segments[r.segment];
  const set = pick(seg.template, r.locale);
  const z = zone(r.timezone || campaign.timezone, sameLanguage(r.locale, set.locale) ? r.locale : set.locale, now);
  const token = crypto.createHmac('sha256', secret).update(`unsubscribe\0${campaign.name}\0${r.id}`)
    .digest().subarray(0, 16).toString('base64url');
  const unsubscribeUrl = `${campaign.unsubscribeUrl}?c=${campaign.name}&r=${r.id}&t=${token}`;
  const upgradeUrl = seg.url || campaign.upgradeUrl;
  const view = {
    recipient: { user_id: r.userId, email: r.email, name: r.name, locale: r.locale, timezone: r.timezone,
      client: r.client, version: r.version, platform: r.platform, os: r.os },
    attributes: { country: r.country },
    campaign: { name: campaign.name, title: campaign.title, from_name: campaign.from.name,
      from_address: campaign.from.address, upgrade_url: campaign.upgradeUrl, timezone: campaign.timezone },
    segment: { name: r.segment, target_version: seg.target, upgrade_url: upgradeUrl, discontinued: seg.target === null },
    client_name: campaign.clientNames[r.client] || r.client, cutoff_date: z.cutoffDate, cutoff_time: z.cutoffTime,
    reminder_start_date: z.reminderStartDate, days_left: z.daysLeft, upgrade_url: upgradeUrl,
    target_version: seg.target, unsubscribe_url: unsubscribeUrl, locale: set.locale,
    timezone: r.timezone || campaign.timezone,
  };
  const mail = {
    from: campaign.from, replyTo: campaign.replyTo,
    to: r.name ? { name: r.name, address: r.email } : r.email,
    subject: Mustache.render(set.subject, view, set.partials, noEscape),
    text: Mustache.render(set.text, view, set.partials, noEscape),
    html: set.html ? Mustache.render(set.html, view, set.partials) : undefined,
    date: new Date(now * 1000),
    messageId: `<${stamp(now)}.${crypto.randomBytes(12).toString('hex')}@msn.example.test>`,
    headers: { 'Auto-Submitted': 'auto-generated', 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
      'X-Cutoff-Campaign': campaign.name, 'X-Cutoff-Recipient': r.userId },
    list: { unsubscribe: unsubscribeUrl },
  };
  return new Promise((resolve, reject) => new MailComposer(mail).compile().build((e, b) => (e ? reject(e) : resolve(b))));
}

async function main() {
  const rs = [];
  for (let i = 0; i < count; i++) {
    const p = people[i % people.length], c = clients[i % clients.length];
    rs.push({ id: i + 1, userId: `u${i}`, email: `user${i}@users.example.test`, name: p[2] || null,
      locale: p[0], timezone: p[1], country: p[3], client: c[0], version: c[1], platform: c[2],
      os: c[3] || null, segment: c[4] });
  }
  if (process.env.PEER_SHOW) { process.stdout.write((await build(rs[Number(process.env.PEER_SHOW)], campaign.announce)).toString()); return; }
  let done = 0, bytes = 0;
  const t0 = process.hrtime.bigint();
  let elapsed = 0;
  do {
    for (let k = 0; k < 200; k++, done++) bytes += (await build(rs[done % count], campaign.announce)).length;
    elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (elapsed < seconds);
  console.log(JSON.stringify({ messages: done, seconds: +elapsed.toFixed(3),
    messages_per_second: Math.round(done / elapsed), average_bytes: Math.round(bytes / done) }));
}
main().catch((e) => { console.error('peer.js:', e); process.exit(70); });
