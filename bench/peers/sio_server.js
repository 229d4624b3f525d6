// Node socket.io 4.x peer: role=sub clients join their room (auth.room, default "bench"); a `pub`
// event (data, room) is emitted to that room.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 0);
const server = http.createServer();
const io = new Server(server, { transports: ["websocket"], perMessageDeflate: false, maxHttpBufferSize: 1e6 });
io.on("connection", (socket) => {
  const auth = socket.handshake.auth || {};
  if (auth.role === "sub") socket.join(auth.room || "bench");
  socket.on("pub", (data, room) => io.to(room || "bench").emit("m", data));
});
server.listen({ port, host: "127.0.0.1", backlog: 1024 }, () => {
  console.log(`node-socket.io listening on http://127.0.0.1:${server.address().port}`);
});
