// `podwire attach`: the live view of the podwire already tracing this node, read from its socket: no probes of its own.
import type { Command } from 'commander';
import { type AttachStream, findSocket, openStream } from '../attach/client.js';
import { type AttachHello, attachDir } from '../attach/protocol.js';
import { status } from '../events.js';

/** Why the stream ended, as one line for people. */
function endText(
  hello: AttachHello | null,
  end: { stopped: boolean; error: string | null },
): string {
  const who = hello ? `podwire (pid ${hello.pid})` : 'podwire';
  if (end.error) return hello ? `${who}: ${end.error}` : end.error;
  if (end.stopped) return `${who} stopped`;
  return `${who} closed the stream without stopping: it died, or let this viewer go for being more than ${Math.round((hello?.maxUnsentBytes ?? 0) / 1048576)} MiB behind`;
}

export function registerAttach(program: Command): void {
  program
    .command('attach')
    .description(
      'the live timeline of the podwire already tracing this node, through its local socket (no second set of probes); read-only',
    )
    .option(
      '--socket <path>',
      `the daemon's socket (default: the one in ${attachDir}; several daemons there: say which)`,
    )
    .option(
      '--json',
      'the stream as NDJSON on stdout, as podwire trace --json writes it, after one line saying which daemon (the default when stdout is not a terminal)',
    )
    .action(async (options: { socket?: string; json?: boolean }) => {
      const fail = (message: string) => {
        process.stderr.write(`podwire attach: ${message}\n`);
        process.exitCode = 2;
      };
      let path = options.socket;
      if (!path) {
        const found = await findSocket(attachDir);
        if ('error' in found) return fail(found.error);
        path = found.path;
      }
      const timeline =
        !options.json && process.stdout.isTTY === true && process.stdin.isTTY === true;
      if (timeline) await attachTimeline(path, fail);
      else await attachJson(path, fail);
    });
}

/** NDJSON on stdout: the hello, the backlog and the live lines as they come, until the daemon or the reader goes. */
async function attachJson(path: string, fail: (message: string) => void): Promise<void> {
  let hello: AttachHello | null = null;
  let stream: AttachStream | null = null;
  await new Promise<void>((resolve) => {
    // `podwire attach --json | head -3`: the reader went away, and so does this viewer.
    process.stdout.on('error', () => {
      stream?.close();
      resolve();
    });
    const out = (text: string) => {
      // A slow reader holds the stream back; the daemon lets this viewer go rather than wait for it.
      if (!process.stdout.write(`${text}\n`)) {
        stream?.pause();
        process.stdout.once('drain', () => stream?.resume());
      }
    };
    stream = openStream(
      path,
      {
        hello: (said, text) => {
          hello = said;
          out(text);
        },
        line: (text) => out(text),
        end: (end) => {
          if (!hello) fail(endText(null, end));
          else {
            process.stderr.write(`podwire attach: ${endText(hello, end)}\n`);
            if (!end.stopped) process.exitCode = 1;
          }
          resolve();
        },
      },
      { parse: false },
    );
    process.once('SIGINT', () => {
      stream?.close();
      resolve();
    });
  });
}

/** The timeline, fed from the stream; when the daemon goes it says so and stays until q. */
async function attachTimeline(path: string, fail: (message: string) => void): Promise<void> {
  const { startTui } = await import('../tui/index.js');
  let tui: import('../tui/index.js').Tui | null = null;
  let hello: AttachHello | null = null;
  // The screen opens with the hello: an error before it stays a plain line on the terminal.
  const opened = new Promise<boolean>((resolve) => {
    const stream = openStream(path, {
      hello: (said) => {
        hello = said;
        // Said beside the node, at the start of the header: its end (the source) is cut on a narrow terminal.
        tui = startTui({
          header: {
            node: `${said.node} · attached to pid ${said.pid}`,
            source: `live view of ${said.socket}`,
            exportState: said.exportState,
          },
        });
        void tui.quit.then(() => stream.close());
        resolve(true);
      },
      line: (_text, line) => {
        if (line) tui?.sink.write(line);
      },
      end: (end) => {
        if (!tui) {
          fail(endText(null, end));
          resolve(false);
          return;
        }
        // Where "attached to pid N" was (the notice, at the end of the second line, is cut on a narrow terminal).
        tui.setHeader({
          node: `${hello?.node} · pid ${hello?.pid} ${end.stopped ? 'stopped' : 'gone'}; q quits`,
        });
        tui.sink.write(status('stopped', `${endText(hello, end)}; the view stays until q`));
      },
    });
  });
  if (!(await opened) || !tui) return;
  const shown = tui as import('../tui/index.js').Tui;
  await shown.quit;
  shown.destroy();
}
