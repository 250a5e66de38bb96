--[[
redbandit write: store new state for some arms of a model, atomically.

All checks run before the first write, so a call that returns an error has
written nothing.

KEYS[1]      the model root hash rb:{M}
KEYS[2..m+1] the arm hashes rb:{M}:arm:<id> of the m arms written, in the
             order of the arm records in ARGV

ARGV, in order:
  format     the format version the caller writes ("1")
  dim        d, 1..64
  lambda     the ridge regularisation, decimal
  features   the feature names as a JSON array of strings
  block      arms per column block, used when the model is created
  now_ms     the caller's clock, stored as updated_ms
  events     the number of events this write folds in (added to `events`)
  g          the number of guards, then g pairs <root field> <expected>:
             the call fails with CONFLICT unless each field holds exactly
             <expected> (an empty <expected> means the field must not exist)
  s          the number of root fields to set, then s pairs <field> <value>
  then m arm records of 7 values each:
    id       the product id
    ver      the arm version the caller read ("0" for an arm not in Redis);
             the call fails with CONFLICT if the stored version differs
    n        events folded into the arm
    a        A, d*d little-endian doubles, row-major
    b        b, d doubles
    theta    theta = A^-1 b, d doubles
    ainv     A^-1, d*d doubles, row-major

Reply: an array of the m new arm versions (integers), in ARGV order.

Errors:
  BADARG   a malformed call (wrong counts or blob lengths)
  BADMODEL the stored model has another format, dimension, lambda or
           feature list than the call
  CONFLICT a guard or an arm version did not match
]]

local FORMAT = '1'
local root = KEYS[1]
local fmt = string.format
local upack, pack = struct.unpack, struct.pack

local function err(code, msg, ...)
  return redis.error_reply(code .. ' ' .. fmt(msg, ...))
end

local function int(s)
  local v = tonumber(s)
  if v == nil or v ~= math.floor(v) or v < 0 then return nil end
  return v
end

local format, d, lambda, features = ARGV[1], int(ARGV[2]), ARGV[3], ARGV[4]
local B, now, events = int(ARGV[5]), ARGV[6], int(ARGV[7])
if format ~= FORMAT then return err('BADARG', 'this script writes format %s, not %s', FORMAT, tostring(format)) end
if not d or d < 1 or d > 64 or not tonumber(lambda) or not B or B < 1 or B > 4000 or not events then
  return err('BADARG', 'malformed header (dim, lambda, block, events)')
end

local p = 8
local g = int(ARGV[p])
if not g then return err('BADARG', 'malformed guard count') end
local guards = {}
for i = 1, g do guards[i] = { ARGV[p + 2 * i - 1], ARGV[p + 2 * i] } end
p = p + 2 * g + 1
local s = int(ARGV[p])
if not s then return err('BADARG', 'malformed set count') end
local sets = {}
for i = 1, 2 * s do sets[i] = ARGV[p + i] end
p = p + 2 * s + 1

local m = #KEYS - 1
if #ARGV ~= p - 1 + 7 * m then
  return err('BADARG', 'expected %d arm records of 7 values for %d arm keys', m, m)
end
local vecb, matb = 8 * d, 8 * d * d

-- Checks: the model's identity, the guards, every arm's version and blobs.
local meta = redis.call('HMGET', root, 'format', 'dim', 'lambda', 'features', 'block', 'arms')
local exists = meta[1] ~= false
if exists then
  if meta[1] ~= FORMAT then return err('BADMODEL', '%s has format %s, not %s', root, meta[1], FORMAT) end
  if meta[2] ~= tostring(d) then return err('BADMODEL', '%s has dimension %s, not %d', root, tostring(meta[2]), d) end
  if tonumber(meta[3]) ~= tonumber(lambda) then return err('BADMODEL', '%s has lambda %s, not %s', root, tostring(meta[3]), lambda) end
  if meta[4] ~= features then return err('BADMODEL', '%s has features %s, not %s', root, tostring(meta[4]), features) end
  B = int(meta[5])
  if not B or B < 1 then return err('BADMODEL', '%s has a malformed block size', root) end
end
local narms = exists and int(meta[6]) or 0
if not narms then return err('BADMODEL', '%s has a malformed arm count', root) end

for i = 1, g do
  local have = redis.call('HGET', root, guards[i][1])
  local want = guards[i][2]
  if (want == '' and have) or (want ~= '' and have ~= want) then
    return err('CONFLICT', 'field %s of %s is %s, expected %s', guards[i][1], root,
      have and ('"' .. have .. '"') or 'absent', want == '' and 'absent' or ('"' .. want .. '"'))
  end
end

local arms, seen = {}, {}
for i = 1, m do
  local o = p - 1 + 7 * (i - 1)
  local arm = {
    key = KEYS[1 + i], id = ARGV[o + 1], ver = ARGV[o + 2], n = ARGV[o + 3],
    a = ARGV[o + 4], b = ARGV[o + 5], theta = ARGV[o + 6], ainv = ARGV[o + 7],
  }
  if arm.id == '' or not int(arm.n) or #arm.a ~= matb or #arm.b ~= vecb or #arm.theta ~= vecb or #arm.ainv ~= matb then
    return err('BADARG', 'arm record %d (%s) is malformed', i, arm.id)
  end
  if arm.key ~= root .. ':arm:' .. arm.id then
    return err('BADARG', 'arm key %s does not belong to arm %s of %s', arm.key, arm.id, root)
  end
  if seen[arm.id] then return err('BADARG', 'arm %s written twice in one call', arm.id) end
  seen[arm.id] = true
  local cur = redis.call('HMGET', arm.key, 'ver', 'idx')
  local have = cur[1] or '0'
  if have ~= arm.ver then
    return err('CONFLICT', 'arm %s is at version %s, expected %s', arm.id, have, arm.ver)
  end
  arm.idx = int(cur[2])
  arms[i] = arm
end

-- Plan every write before making any, so that a failure writes nothing:
-- new arms get the next free indexes, and the columns of every touched block
-- are read, checked and rebuilt in memory.
local byblock, blocks = {}, {}
local newarms = {}
for i = 1, m do
  local arm = arms[i]
  if not arm.idx then
    arm.idx = narms
    narms = narms + 1
    newarms[#newarms + 1] = arm
  end
  local blk = math.floor(arm.idx / B)
  if not byblock[blk] then
    byblock[blk] = {}
    blocks[#blocks + 1] = blk
  end
  table.insert(byblock[blk], arm)
end

-- Columnar layout: t:<b>:<i> holds theta_i and q:<b>:<i>:<j> (i <= j) holds
-- A^-1_ij for the arms of block b, one double per arm in index order.
local cols = {}
for i = 0, d - 1 do cols[#cols + 1] = { ':' .. i, i, -1 } end
for i = 0, d - 1 do
  for j = i, d - 1 do cols[#cols + 1] = { ':' .. i .. ':' .. j, i, j } end
end
local dfmt = '<' .. string.rep('d', d)
local colwrites = {}
for _, blk in ipairs(blocks) do
  local cnt = math.min(B, narms - blk * B)
  local fields = {}
  for c = 1, #cols do fields[c] = ((cols[c][3] < 0) and 't:' or 'q:') .. blk .. cols[c][1] end
  local old = redis.call('HMGET', root, unpack(fields))
  local touched = byblock[blk]
  local slots, thetas, ainvs = {}, {}, {}
  for t = 1, #touched do
    slots[t] = touched[t].idx - blk * B + 1
    thetas[t] = { upack(dfmt, touched[t].theta) }
    local rows = {}
    for r = 0, d - 1 do rows[r] = { upack(dfmt, touched[t].ainv, 8 * r * d + 1) } end
    ainvs[t] = rows
  end
  local vfmt = '<' .. string.rep('d', cnt)
  local out = {}
  for c = 1, #cols do
    local v = {}
    local o = old[c]
    if o then
      local have = #o / 8
      if have > cnt or have ~= math.floor(have) then
        return err('BADMODEL', 'column %s of %s has the wrong length', fields[c], root)
      end
      if have > 0 then v = { upack('<' .. string.rep('d', have), o) } end
      v[have + 1] = nil
    end
    for a = #v + 1, cnt do v[a] = 0 end
    local i, j = cols[c][2], cols[c][3]
    for t = 1, #touched do
      if j < 0 then
        v[slots[t]] = thetas[t][i + 1]
      else
        v[slots[t]] = ainvs[t][i][j + 1]
      end
    end
    out[#out + 1] = fields[c]
    out[#out + 1] = pack(vfmt, unpack(v, 1, cnt))
  end
  colwrites[#colwrites + 1] = out
end

-- Writes.
if not exists then
  redis.call('HSET', root, 'format', FORMAT, 'dim', d, 'lambda', lambda, 'features', features, 'block', B)
end
for _, arm in ipairs(newarms) do
  redis.call('HSET', root, 'id:' .. arm.idx, arm.id, 'ix:' .. arm.id, arm.idx)
end
local versions = {}
for i = 1, m do
  local arm = arms[i]
  local ver = tonumber(arm.ver) + 1
  versions[i] = ver
  redis.call('HSET', arm.key, 'idx', arm.idx, 'ver', ver, 'n', arm.n, 'a', arm.a, 'b', arm.b,
    'theta', arm.theta, 'ainv', arm.ainv, 'updated_ms', now)
  -- Row layout: theta, then the upper triangle of A^-1 row by row.
  local row = { arm.theta }
  for r = 0, d - 1 do row[#row + 1] = string.sub(arm.ainv, 8 * (r * d + r) + 1, 8 * (r * d + d)) end
  redis.call('HSET', root, 'r:' .. arm.id, table.concat(row))
end
for _, out in ipairs(colwrites) do redis.call('HSET', root, unpack(out)) end
redis.call('HSET', root, 'arms', narms, 'updated_ms', now)
redis.call('HINCRBY', root, 'events', events)
if s > 0 then redis.call('HSET', root, unpack(sets)) end
return versions
