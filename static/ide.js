// A minimal IDE: run the editor's code as a session and stream it over the WebSocket protocol.
const $ = (id) => document.getElementById(id);
const out = $("output"), input = $("input"), status = $("status");
let ws = null;

function append(text, cls) {
  const span = document.createElement("span");
  if (cls) span.className = cls;
  span.textContent = text;
  out.appendChild(span);
  out.scrollTop = out.scrollHeight;
}

async function run() {
  if (ws) ws.close();
  out.textContent = "";
  status.textContent = "starting…";
  const res = await fetch("/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ language: $("language").value, code: $("code").value }),
  });
  const body = await res.json();
  if (!res.ok) { status.textContent = `refused: ${body.error.message}`; return; }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws/session/${body.sessionId}`);
  $("stop").disabled = false;
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "stdout" || msg.type === "stderr") append(msg.data, msg.type);
    else if (msg.type === "error") append(`\n[${msg.message}]\n`, "note");
    else if (msg.type === "state") {
      status.textContent = msg.state === "RUNNING" ? "running" :
        `${msg.state.toLowerCase()}: ${msg.reason}, exit code ${msg.exitCode}`;
      input.disabled = msg.state !== "RUNNING";
      if (msg.state === "RUNNING") input.focus();
    }
  };
  ws.onclose = () => { $("stop").disabled = true; input.disabled = true; ws = null; };
}

$("run").onclick = run;
$("stop").onclick = () => ws && ws.send(JSON.stringify({ type: "kill" }));
$("code").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
$("input-form").onsubmit = (e) => {
  e.preventDefault();
  if (!ws) return;
  append(input.value + "\n", "note");
  ws.send(JSON.stringify({ type: "input", data: input.value + "\n" }));
  input.value = "";
};
