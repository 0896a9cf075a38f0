// bench/send's Node.js peer: nodemailer with a pool of 8 connections, composing a personalised
// message (mustache-free plain text, like cutoff's text part) for each of N recipients.
// Each pooled connection gets TCP_NODELAY (getSocket hands nodemailer a socket opened with
// noDelay): without it Nagle's algorithm and delayed ACKs stall every small SMTP command by
// about 40 ms, and the figure measures that stall rather than nodemailer.
const net = require("net");
const nodemailer = require("nodemailer");
const [port, total, conns] = process.argv.slice(2).map(Number);
const t = nodemailer.createTransport({ host: "127.0.0.1", port, secure: false, pool: true,
  maxConnections: conns, maxMessages: Infinity, ignoreTLS: true,
  getSocket: (options, callback) => {
    const s = net.connect({ host: "127.0.0.1", port, noDelay: true });
    s.once("connect", () => callback(null, { connection: s }));
    s.once("error", (err) => callback(err));
  } });
let sent = 0, failed = 0, next = 0, active = 0;
function pump() {
  while (active < conns * 2 && next < total) {
    const i = next++; active++;
    t.sendMail({ from: '"MSN Messenger Team" <messenger-upgrade@msn.example.test>',
      to: `"User ${i}" <user${i}@users.example.test>`,
      subject: "MSN Messenger: please upgrade before Wednesday, 15 October 2003",
      text: `Hello User ${i},\n\nWe are upgrading the MSN Messenger service. From Wednesday, ` +
        `15 October 2003, version 4.6 will no longer connect.\n\nhttps://messenger.example.test/upgrade\n`,
      html: `<p>Hello User ${i},</p><p>We are upgrading the MSN Messenger service.</p>` })
      .then(() => sent++, () => failed++)
      .finally(() => { active--; if (sent + failed === total) { console.log(`${sent} sent, ${failed} failed`); t.close(); } else pump(); });
  }
}
pump();
