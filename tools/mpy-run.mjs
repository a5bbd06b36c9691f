// Run a Python script under the real MicroPython interpreter (WebAssembly build).
//
//   node tools/mpy-run.mjs [--path DIR]... SCRIPT.py [ARGS...]
//
// Each --path DIR is copied (its .py files, recursively) into the interpreter's
// in-memory file system and put on sys.path, so firmware packages import as on
// the board.  sys.argv holds SCRIPT and ARGS.  The script runs through
// runPythonAsync (so top-level `await` and asyncio tasks work).  Exit code 0
// on success, 1 if the script raised (the traceback goes to stderr).
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "node:fs";
import path from "node:path";

const args = process.argv.slice(2);
const paths = [];
while (args[0] === "--path") { args.shift(); paths.push(args.shift()); }
if (args.length < 1) {
  console.error("usage: node tools/mpy-run.mjs [--path DIR]... SCRIPT.py [ARGS...]");
  process.exit(2);
}
const script = args[0];
let stderr = "";
const mp = await loadMicroPython({
  heapsize: 8 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => { stderr += line + "\n"; process.stderr.write(line + "\n"); },
});

function copyTree(src, dst) {
  mp.FS.mkdirTree(dst);
  for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
    const from = path.join(src, entry.name);
    const to = dst + "/" + entry.name;
    if (entry.isDirectory()) { if (entry.name !== "__pycache__") copyTree(from, to); }
    else if (entry.name.endsWith(".py") || entry.name.endsWith(".json")) {
      mp.FS.writeFile(to, fs.readFileSync(from));
    }
  }
}
const mounted = paths.map((p, i) => { const dst = `/mnt${i}`; copyTree(p, dst); return dst; });
const setup = "import sys\n" +
  mounted.map((p) => `sys.path.insert(0, ${JSON.stringify(p)})\n`).join("") +
  `sys.argv[:] = ${JSON.stringify(args)}\n`;
try {
  mp.runPython(setup);
  await mp.runPythonAsync(fs.readFileSync(script, "utf8"));
} catch (err) {
  if (!stderr) console.error(String(err && err.message ? err.message : err));
  process.exit(1);
}
