/* cluster_scripts.c: the Lua scripts of ws-api's Redis cluster layer (cluster.h), run with
 * EVALSHA (redis.h). Each touches the keys of one gateway (one hash tag), so each runs on one
 * Redis Cluster shard. Connection values are netstrings: the user, then the rooms it joined.
 * Data only; any thread. */
#include "cluster_priv.h"

/* hb: KEYS meta; ARGV mode (bind|beat|rotate), node, now_ms, ttl_ms, newtok, inst, prefix,
 * known tok ("*": rotate whatever it is). Returns {tok, made, prev}: prev is the token the
 * current one replaced ("" when it replaced none), whose connections' rooms the resync's
 * Opens carry over (cl__open_script). */
redis_script_t cl__hb_script = {.text =
    "local m = KEYS[1]\n"
    "local mode = ARGV[1]\n"
    "local tok = redis.call('HGET', m, 'tok')\n"
    "local old = tok\n"
    "if tok and mode == 'rotate' and (ARGV[8] == '*' or tok == ARGV[8]) then tok = false end\n"
    "if tok and mode == 'bind' and ARGV[6] ~= '' then\n"
    "  local inst = redis.call('HGET', m, 'inst')\n"
    "  if inst and inst ~= ARGV[6] then tok = false end\n"
    "end\n"
    "local made = 0\n"
    "if not tok then\n"
    "  tok = ARGV[5]\n"
    "  made = 1\n"
    "  redis.call('HSET', m, 'tok', tok, 'syn', '')\n"
    "  if old then redis.call('HSET', m, 'prev', old) else redis.call('HDEL', m, 'prev') end\n"
    "end\n"
    "if mode == 'bind' and ARGV[6] ~= '' then redis.call('HSET', m, 'inst', ARGV[6]) end\n"
    "if mode == 'bind' and ARGV[7] ~= '' then redis.call('HSET', m, 'pfx', ARGV[7]) end\n"
    "local now = tonumber(ARGV[3])\n"
    "if mode ~= 'rotate' then redis.call('HSET', m, 'n:' .. ARGV[2], now + tonumber(ARGV[4])) end\n"
    "local f = redis.call('HGETALL', m)\n"
    "for i = 1, #f, 2 do\n"
    "  if string.sub(f[i], 1, 2) == 'n:' and tonumber(f[i + 1]) < now then\n"
    "    redis.call('HDEL', m, f[i])\n"
    "  end\n"
    "end\n"
    "redis.call('PEXPIRE', m, ARGV[4])\n"
    "return {tok, made, redis.call('HGET', m, 'prev') or ''}\n"};

/* open: KEYS meta, conns, tomb(B-1), tomb(B), tomb(B+1) [, conns of the token this one
 * replaced]; ARGV tok, conn, user, rooms ("" or "=" then netstrings: a resync Open's
 * Open.rooms, "=" alone when it is in none). Returns 1 written, 0 another token, 2 closed
 * already (a late Open: refused), or {rooms, fresh}. Keeps the rooms it has under tok. A
 * connection new under tok gets the gateway's rooms when the Open had them (rooms live on the
 * gateways: joins and leaves Redis missed, or all of them when Redis lost its data), else the
 * rooms the replaced token had; then it returns them
 * (netstrings), for their index entries to be written under tok (a new token would otherwise
 * drop the gateway's room listings), and how many of them the replaced token did not have. */
redis_script_t cl__open_script = {.text =
    "if redis.call('HGET', KEYS[1], 'tok') ~= ARGV[1] then return 0 end\n"
    "for i = 3, 5 do\n"
    "  if redis.call('SISMEMBER', KEYS[i], ARGV[2]) == 1 then return 2 end\n"
    "end\n"
    "local v = #ARGV[3] .. ':' .. ARGV[3]\n"
    "local old = redis.call('HGET', KEYS[2], ARGV[2])\n"
    "local carried = false\n"
    "if not old and KEYS[6] then\n"
    "  old = redis.call('HGET', KEYS[6], ARGV[2])\n"
    "  carried = true\n"
    "end\n"
    "local rooms = ''\n"
    "if old then\n"
    "  local c = string.find(old, ':', 1, true)\n"
    "  local n = tonumber(string.sub(old, 1, c - 1))\n"
    "  rooms = string.sub(old, c + n + 1)\n"
    "end\n"
    "local fresh = 0\n"
    "if ARGV[4] ~= '' and (carried or not old) then\n"
    "  local had = {}\n"
    "  local i = 1\n"
    "  while i <= #rooms do\n"
    "    local c = string.find(rooms, ':', i, true)\n"
    "    local n = tonumber(string.sub(rooms, i, c - 1))\n"
    "    had[string.sub(rooms, c + 1, c + n)] = true\n"
    "    i = c + n + 1\n"
    "  end\n"
    "  local g = string.sub(ARGV[4], 2)\n"
    "  rooms = ''\n"
    "  i = 1\n"
    "  while i <= #g do\n"
    "    local c = string.find(g, ':', i, true)\n"
    "    local n = tonumber(string.sub(g, i, c - 1))\n"
    "    local r = string.sub(g, c + 1, c + n)\n"
    "    if had[r] ~= 0 then\n"
    "      if not had[r] then fresh = fresh + 1 end\n"
    "      had[r] = 0\n"
    "      rooms = rooms .. n .. ':' .. r\n"
    "    end\n"
    "    i = c + n + 1\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[2], ARGV[2], v .. rooms)\n"
    "if rooms ~= '' and (carried or fresh > 0) then return {rooms, fresh} end\n"
    "return 1\n"};

/* close: KEYS meta, conns, tomb(B); ARGV tok, conn, tomb ttl s. Returns {1, value} or {0, ''}
 * (another token). */
redis_script_t cl__close_script = {.text =
    "if redis.call('HGET', KEYS[1], 'tok') ~= ARGV[1] then return {0, ''} end\n"
    "local v = redis.call('HGET', KEYS[2], ARGV[2])\n"
    "redis.call('HDEL', KEYS[2], ARGV[2])\n"
    "redis.call('SADD', KEYS[3], ARGV[2])\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[3])\n"
    "return {1, v or ''}\n"};

/* room: KEYS meta, conns; ARGV tok, conn, room, join (1|0), max rooms per connection (0: no
 * cap). Returns 1 done, 0 another token, 2 no such connection, 3 a join of a new room past the
 * cap (nothing written: the list is parsed on every join, so an uncapped one made each join
 * cost Redis more than the last). */
redis_script_t cl__room_script = {.text =
    "if redis.call('HGET', KEYS[1], 'tok') ~= ARGV[1] then return 0 end\n"
    "local v = redis.call('HGET', KEYS[2], ARGV[2])\n"
    "if not v then return 2 end\n"
    "local items = {}\n"
    "local i = 1\n"
    "while i <= #v do\n"
    "  local c = string.find(v, ':', i, true)\n"
    "  local n = tonumber(string.sub(v, i, c - 1))\n"
    "  items[#items + 1] = string.sub(v, c + 1, c + n)\n"
    "  i = c + n + 1\n"
    "end\n"
    "local out = #items[1] .. ':' .. items[1]\n"
    "local found = false\n"
    "for k = 2, #items do\n"
    "  if items[k] == ARGV[3] then found = true end\n"
    "  if items[k] ~= ARGV[3] or ARGV[4] == '1' then out = out .. #items[k] .. ':' .. items[k] end\n"
    "end\n"
    "if ARGV[4] == '1' and not found then\n"
    "  if tonumber(ARGV[5]) > 0 and #items - 1 >= tonumber(ARGV[5]) then return 3 end\n"
    "  out = out .. #ARGV[3] .. ':' .. ARGV[3]\n"
    "end\n"
    "redis.call('HSET', KEYS[2], ARGV[2], out)\n"
    "return 1\n"};

/* check: KEYS meta, conns; ARGV tok, conn... Returns one 0/1 per conn, or for all of them: {}
 * no token (the gateway is gone); {-1} another token whose presence is still being re-sent
 * (nobody can tell yet: the resync re-writes a live connection under it); {-2} another token
 * whose presence is whole (a connection live is there, not under tok). */
redis_script_t cl__check_script = {.text =
    "local tok = redis.call('HGET', KEYS[1], 'tok')\n"
    "if not tok then return {} end\n"
    "if tok ~= ARGV[1] then\n"
    "  if redis.call('HGET', KEYS[1], 'syn') ~= tok then return {-1} end\n"
    "  return {-2}\n"
    "end\n"
    "local r = {}\n"
    "for i = 2, #ARGV do r[#r + 1] = redis.call('HEXISTS', KEYS[2], ARGV[i]) end\n"
    "return r\n"};

/* sync: KEYS meta; ARGV tok. The presence under tok is whole. */
redis_script_t cl__sync_script = {.text =
    "if redis.call('HGET', KEYS[1], 'tok') ~= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'syn', ARGV[1])\n"
    "return 1\n"};

/* unlink: KEYS index hash (user or room); ARGV conn, tok. Drops the entry if it is still the
 * one made under tok (a stale index entry; a newer one stays). */
redis_script_t cl__unlink_script = {.text =
    "local v = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if v and string.sub(v, 1, #ARGV[2]) == ARGV[2] then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n"};
