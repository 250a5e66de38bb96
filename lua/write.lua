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
  groups     the one-hot groups as a JSON array of {"features": [0-based
             feature indexes], "optional": true if all may be zero} ("[]"
             for none); see docs/FORMAT.md
  block      arms per column block, used when the model is created
  now_ms     the caller's clock, stored as updated_ms
  events     the number of events this write folds in (added to `events`)
  rewards    the sum of their rewards, decimal (added to `rewards`)
  invalid    the number of events dead-lettered since the caller's last
             write (added to `invalid`)
  g          the number of guards, then g pairs <root field> <expected>:
             the call fails with CONFLICT unless each field holds exactly
             <expected> (an empty <expected> means the field must not exist)
  s          the number of root fields to set, then s pairs <field> <value>
  then m arm records of 9 values each:
    id       the product id
    ver      the arm version the caller read ("0" for an arm not in Redis);
             the call fails with CONFLICT if the stored version differs
    n        events folded into the arm
    r        the sum of their rewards, decimal
    a        A, d*d little-endian doubles, row-major
    b        b, d doubles
    theta    theta = A^-1 b, d doubles
    ainv     A^-1, d*d doubles, row-major
    pat      the pattern values (docs/FORMAT.md, "One-hot groups"): for each
             pattern in order, theta_P, W_P and V_P,c for each continuous
             feature c; empty without groups

Reply: an array of the m new arm versions (integers), in ARGV order.

Errors:
  BADARG   a malformed call (wrong counts or blob lengths)
  BADMODEL the stored model has another format, dimension, lambda, feature
           list or groups than the call
  CONFLICT a guard or an arm version did not match
]]

local FORMAT = '2'
local root = KEYS[1]
local fmt = string.format
local upack, pack = struct.unpack, struct.pack

local function err(code, msg, ...)
  return redis.error_reply(code .. ' ' .. fmt(msg, ...))
end

local function int(s)
  if s == nil then return nil end
  local v = tonumber(s)
  if v == nil or v ~= math.floor(v) or v < 0 then return nil end
  return v
end

local format, d, lambda, features, groupsjson = ARGV[1], int(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local B, now, events, rewards, invalid = int(ARGV[6]), ARGV[7], int(ARGV[8]), tonumber(ARGV[9]), int(ARGV[10])
if format ~= FORMAT then return err('BADARG', 'this script writes format %s, not %s', FORMAT, tostring(format)) end
if not d or d < 1 or d > 64 or not tonumber(lambda) or not B or B < 1 or B > 4000 or not events
    or not rewards or rewards ~= rewards or rewards < 0 or rewards == math.huge or not invalid then
  return err('BADARG', 'malformed header (dim, lambda, block, events, rewards, invalid)')
end

-- One-hot groups: npat patterns (the product of the group sizes, plus one
-- for "none" in optional groups), each with
-- 2 + #cont values per arm, cont being the features in no group.
local ok, groups = pcall(cjson.decode, groupsjson or '')
if not ok or type(groups) ~= 'table' then return err('BADARG', 'groups is not a JSON array') end
local npat, cont, ingroup = 1, {}, {}
for gi = 1, #groups do
  local grp = type(groups[gi]) == 'table' and groups[gi].features
  if type(grp) ~= 'table' or #grp < 1 then return err('BADARG', 'group %d has no features', gi) end
  for _, f in ipairs(grp) do
    if type(f) ~= 'number' or f ~= math.floor(f) or f < 0 or f >= d or ingroup[f] then
      return err('BADARG', 'group %d has a bad or repeated feature index', gi)
    end
    ingroup[f] = true
  end
  npat = npat * (#grp + (groups[gi].optional == true and 1 or 0))
end
if #groups == 0 then npat = 0 end
for f = 0, d - 1 do
  if not ingroup[f] then cont[#cont + 1] = f end
end
local patvals = npat * (2 + #cont)
if patvals > 4096 then return err('BADARG', 'groups make %d pattern values per arm, more than 4096', patvals) end

local p = 11
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
local R = 9 -- values per arm record
if #ARGV ~= p - 1 + R * m then
  return err('BADARG', 'expected %d arm records of %d values for %d arm keys', m, R, m)
end
local vecb, matb = 8 * d, 8 * d * d

-- Checks: the model's identity, the guards, every arm's version and blobs.
local meta = redis.call('HMGET', root, 'format', 'dim', 'lambda', 'features', 'block', 'arms', 'groups', 'rewards')
local exists = meta[1] ~= false
if exists then
  if meta[1] ~= FORMAT then return err('BADMODEL', '%s has format %s, not %s', root, meta[1], FORMAT) end
  if meta[2] ~= tostring(d) then return err('BADMODEL', '%s has dimension %s, not %d', root, tostring(meta[2]), d) end
  if tonumber(meta[3]) ~= tonumber(lambda) then return err('BADMODEL', '%s has lambda %s, not %s', root, tostring(meta[3]), lambda) end
  if meta[4] ~= features then return err('BADMODEL', '%s has features %s, not %s', root, tostring(meta[4]), features) end
  if (meta[7] or '[]') ~= groupsjson then return err('BADMODEL', '%s has groups %s, not %s', root, tostring(meta[7] or '[]'), groupsjson) end
  B = int(meta[5])
  if not B or B < 1 then return err('BADMODEL', '%s has a malformed block size', root) end
end
local narms = exists and int(meta[6]) or 0
if not narms then return err('BADMODEL', '%s has a malformed arm count', root) end
local total = tonumber(meta[8] or '0')
if not total then return err('BADMODEL', '%s has a malformed reward sum', root) end

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
  local o = p - 1 + R * (i - 1)
  local arm = {
    key = KEYS[1 + i], id = ARGV[o + 1], ver = ARGV[o + 2], n = ARGV[o + 3], r = ARGV[o + 4],
    a = ARGV[o + 5], b = ARGV[o + 6], theta = ARGV[o + 7], ainv = ARGV[o + 8], pat = ARGV[o + 9],
  }
  local rsum = tonumber(arm.r)
  if arm.id == '' or not int(arm.n) or not rsum or rsum ~= rsum or rsum < 0 or rsum == math.huge or #arm.a ~= matb or #arm.b ~= vecb or #arm.theta ~= vecb or #arm.ainv ~= matb
      or #arm.pat ~= 8 * patvals then
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
-- A^-1_ij for the arms of block b, one double per arm in index order. Each
-- column is {prefix, suffix, source, i, j}: source 1 is theta[i], 2 is
-- A^-1[i][j].
local cols = {}
for i = 0, d - 1 do cols[#cols + 1] = { 't:', ':' .. i, 1, i } end
for i = 0, d - 1 do
  for j = i, d - 1 do cols[#cols + 1] = { 'q:', ':' .. i .. ':' .. j, 2, i, j } end
end
local dfmt = '<' .. string.rep('d', d)

-- Row layout of models with one-hot groups: per arm, the continuous values
-- (theta_c for each feature c in no group, then A^-1_cc' for c <= c', row by
-- row) and each pattern's values (theta_P, W_P, V_P,c: 2 + #cont doubles).
-- c:<b> and p:<b>:<pattern> hold them for the arms of block b in index
-- order; f:<id> holds one arm's continuous values and all its patterns'.
local ncv = #cont + #cont * (#cont + 1) / 2
local prowb = 8 * (2 + #cont)
local function controw(theta, ainv)
  local v = {}
  for _, c in ipairs(cont) do v[#v + 1] = theta[c + 1] end
  for a = 1, #cont do
    for b = a, #cont do v[#v + 1] = ainv[cont[a]][cont[b] + 1] end
  end
  if #v == 0 then return '' end
  return pack('<' .. string.rep('d', #v), unpack(v))
end
local zero8 = pack('<d', 0)
-- splice returns the rows of a block's blob old (width bytes each, or nil)
-- with the rows at slots (ascending, 1-based) replaced by rows, cnt rows in
-- all (zeros for rows neither stored nor given), or nil if old is malformed.
local function splice(old, cnt, width, slots, rows)
  local have = 0
  if old then
    have = #old / width
    if have ~= math.floor(have) or have > cnt then return nil end
  end
  local parts, pos = {}, 1
  local function keep(from, to) -- rows from..to as they were
    if from > to then return end
    if from <= have then parts[#parts + 1] = string.sub(old, (from - 1) * width + 1, math.min(to, have) * width) end
    if to > have then parts[#parts + 1] = string.rep(zero8, (to - math.max(from, have + 1) + 1) * width / 8) end
  end
  for t = 1, #slots do
    keep(pos, slots[t] - 1)
    parts[#parts + 1] = rows[t]
    pos = slots[t] + 1
  end
  keep(pos, cnt)
  return table.concat(parts)
end
local colwrites = {}
for _, blk in ipairs(blocks) do
  local cnt = math.min(B, narms - blk * B)
  local fields = {}
  for c = 1, #cols do fields[c] = cols[c][1] .. blk .. cols[c][2] end
  local old = redis.call('HMGET', root, unpack(fields))
  local touched = byblock[blk]
  local slots, thetas, ainvs = {}, {}, {}
  for t = 1, #touched do
    slots[t] = touched[t].idx - blk * B + 1
    thetas[t] = { upack(dfmt, touched[t].theta) }
    local rows = {}
    for r = 0, d - 1 do rows[r] = { upack(dfmt, touched[t].ainv, 8 * r * d + 1) } end
    ainvs[t] = rows
    if npat > 0 then touched[t].crow = controw(thetas[t], rows) end
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
    local src, i, j = cols[c][3], cols[c][4], cols[c][5]
    for t = 1, #touched do
      if src == 1 then
        v[slots[t]] = thetas[t][i + 1]
      else
        v[slots[t]] = ainvs[t][i][j + 1]
      end
    end
    out[#out + 1] = fields[c]
    out[#out + 1] = pack(vfmt, unpack(v, 1, cnt))
  end
  if npat > 0 then
    -- The rows of the touched arms, in slot order.
    local order = {}
    for t = 1, #touched do order[t] = t end
    table.sort(order, function(a, b) return slots[a] < slots[b] end)
    local sorted, crows = {}, {}
    for r = 1, #order do
      local t = order[r]
      sorted[r] = slots[t]
      crows[r] = touched[t].crow
    end
    local rfields = { 'c:' .. blk }
    for pid = 0, npat - 1 do rfields[#rfields + 1] = 'p:' .. blk .. ':' .. pid end
    local oldrows = redis.call('HMGET', root, unpack(rfields))
    for f = 1, #rfields do
      local width, rows = 8 * ncv, crows
      if f > 1 then
        width, rows = prowb, {}
        local from = (f - 2) * prowb + 1
        for r = 1, #order do rows[r] = string.sub(touched[order[r]].pat, from, from + prowb - 1) end
      end
      local blob = width > 0 and splice(oldrows[f] or nil, cnt, width, sorted, rows) or ''
      if not blob then
        return err('BADMODEL', 'row blob %s of %s has the wrong length', rfields[f], root)
      end
      out[#out + 1] = rfields[f]
      out[#out + 1] = blob
    end
  end
  colwrites[#colwrites + 1] = out
end

-- Writes.
if not exists then
  redis.call('HSET', root, 'format', FORMAT, 'dim', d, 'lambda', lambda, 'features', features, 'groups', groupsjson, 'block', B)
end
for _, arm in ipairs(newarms) do
  redis.call('HSET', root, 'id:' .. arm.idx, arm.id, 'ix:' .. arm.id, arm.idx)
end
local versions = {}
for i = 1, m do
  local arm = arms[i]
  local ver = tonumber(arm.ver) + 1
  versions[i] = ver
  redis.call('HSET', arm.key, 'idx', arm.idx, 'ver', ver, 'n', arm.n, 'rewards', arm.r, 'a', arm.a, 'b', arm.b,
    'theta', arm.theta, 'ainv', arm.ainv, 'updated_ms', now)
  -- Row layout: theta, then the upper triangle of A^-1 row by row.
  local row = { arm.theta }
  for r = 0, d - 1 do row[#row + 1] = string.sub(arm.ainv, 8 * (r * d + r) + 1, 8 * (r * d + d)) end
  redis.call('HSET', root, 'r:' .. arm.id, table.concat(row))
  if npat > 0 then redis.call('HSET', root, 'f:' .. arm.id, arm.crow .. arm.pat) end
end
for _, out in ipairs(colwrites) do
  -- HSET in slices: unpack() of more than a few thousand values would
  -- overflow the Lua C stack.
  for from = 1, #out, 2000 do
    redis.call('HSET', root, unpack(out, from, math.min(from + 1999, #out)))
  end
end
redis.call('HSET', root, 'arms', narms, 'updated_ms', now)
redis.call('HINCRBY', root, 'events', events)
redis.call('HINCRBY', root, 'invalid', invalid)
-- %.17g: every double round-trips (tostring would keep 14 digits).
redis.call('HSET', root, 'rewards', fmt('%.17g', total + rewards))
if s > 0 then redis.call('HSET', root, unpack(sets)) end
return versions
