// The seed's design, rebuilt as Herald's benchmark baseline: Socket.IO 4.8 behind a JWT middleware,
// a fleet of processes joined by the Redis adapter, a user room and 15 team rooms per connection.
//
//   ROLE=gateway   serves sockets on HOST:PORT (one Node process per core, as the seed ran it)
//   ROLE=publisher subscribes to the Redis channel `herald:publish` and emits each entry to its
//                  room through the adapter, as the seed's API servers did; it holds no sockets.
//
// Nothing is stored: a client that is away when `emit` runs never gets that notification (the
// Redis adapter has no connection-state recovery), which is what the reconnect scenario shows.
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');
const jwt = require('jsonwebtoken');

const config = {
  role: process.env.ROLE || 'gateway',
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 3000),
  redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
  secret: process.env.JWT_SECRET,
  audience: process.env.JWT_AUDIENCE || 'herald',
  // The seed read a user's teams from its database on connect; the bench derives them from the
  // user id instead (`u<n>`), which spares the baseline a lookup Herald never needs either.
  teamsPerUser: 15,
  teamCount: Number(process.env.TEAM_COUNT || 1000),
  bigTeamSize: Number(process.env.BIG_TEAM_SIZE || 10000),
  ingestChannel: process.env.INGEST_CHANNEL || 'herald:publish',
};
if (!config.secret) {
  console.error('JWT_SECRET is required');
  process.exit(2);
}

// User `u<n>` is in `big-<n / bigTeamSize>` (the fan-out team) and 14 smaller teams.
function teamsOf(user) {
  const n = Number(user.replace(/^\D+/, '')) || 0;
  const rooms = [`team:big-${Math.floor(n / config.bigTeamSize)}`];
  for (let j = 0; rooms.length < config.teamsPerUser; j++) {
    rooms.push(`team:t-${(n * 14 + j) % config.teamCount}`);
  }
  return rooms;
}

async function adapter() {
  const pub = createClient({ url: config.redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  return { pub, sub, adapter: createAdapter(pub, sub) };
}

async function gateway() {
  const server = http.createServer();
  const { adapter: redisAdapter } = await adapter();
  const io = new Server(server, { adapter: redisAdapter });

  // The seed's middleware: HS256 with the shared secret, `aud` checked, `exp` required.
  io.use((socket, next) => {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    if (typeof token !== 'string') return next(new Error('unauthorized'));
    try {
      const claims = jwt.verify(token, config.secret, { algorithms: ['HS256'], audience: config.audience });
      if (typeof claims.sub !== 'string' || typeof claims.exp !== 'number') return next(new Error('unauthorized'));
      socket.data.user = claims.sub;
      next();
    } catch {
      next(new Error('unauthorized'));
    }
  });
  io.on('connection', (socket) => {
    socket.join([`user:${socket.data.user}`, ...teamsOf(socket.data.user)]);
  });

  server.listen(config.port, config.host, () => console.log(`ready gateway ${config.host}:${config.port}`));
}

async function publisher() {
  const { pub, sub, adapter: redisAdapter } = await adapter();
  // A socket-less Server: `io.to(room).emit` goes out through the adapter to every gateway.
  const io = new Server({ adapter: redisAdapter });
  const ingest = pub.duplicate();
  await ingest.connect();
  await ingest.subscribe(config.ingestChannel, (message) => {
    let entry;
    try {
      entry = JSON.parse(message);
    } catch {
      return; // the bench only sends JSON; anything else is not ours
    }
    io.to(entry.to).emit('notification', entry.notification);
  });
  void sub;
  console.log(`ready publisher ${config.ingestChannel}`);
}

(config.role === 'publisher' ? publisher() : gateway()).catch((e) => {
  console.error(e);
  process.exit(1);
});
