--[[
redbandit write: store new state for some arms of a model, atomically.

All checks run before the first write, so a call that returns an error has
written nothing.

KEYS[1]      the model root hash rb:{M}
KEYS[2..m+1] the arm hashes rb:{M}:arm:<id> of the m arms written, in the
             order of the arm records in ARGV

ARGV, in order:
  format     the format version the caller writes ("3"); a stored model of
             format 2 is migrated to 3 by the call (docs/FORMAT.md)
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
    row      theta = A^-1 b (d doubles), then the upper triangle of A^-1
             row by row: the arm's row r:<id>, and its values in the order
             of the columns t:/q: (docs/FORMAT.md)
    ainv     A^-1, d*d doubles, row-major
    frow     the arm's folded values (docs/FORMAT.md, "One-hot groups"): its
             continuous values, then for each pattern theta_P, W_P and V_P,c
             for each continuous feature c; empty without groups. The
             script stores them as the rows f:<part>:<id>.
  then the same values transposed, one blob per field of a block, so that
  the script copies runs of arms instead of moving single numbers (Lua is
  slow at that), each holding the arms' values in record order:
    for each column t:/q: in order, its value (8 bytes per arm);
    with groups, then: theta_c for the continuous features c, A^-1 over
    them (upper triangle), then for each pattern in order theta_P, and
    W_P with V_P,c (the rows c:, a:, p:, w: of docs/FORMAT.md).
  A block whose arms are written in index order, all of them (as a trainer
  does when every product changed), becomes one copy per column and row.

Every successful call also counts itself in the root field wseq and leaves
a change record chg:<wseq mod 64> = "<wseq>:<idx>,<idx>,..." listing the
indexes of the arms it wrote (docs/FORMAT.md), for readers that keep a copy
of the model.

Reply: an array of the m new arm versions (integers), in ARGV order.

Errors:
  BADARG   a malformed call (wrong counts or blob lengths)
  BADMODEL the stored model has another format (but 2, which it migrates),
           dimension, lambda, feature list or groups than the call, or
           malformed data
  CONFLICT a guard or an arm version did not match

It shares no code with recommend.lua: Redis scripts cannot require, and
recommend.lua is loaded exactly as it is (its SHA1 is the name EVALSHA calls
it by, and clients may load it from the file themselves, README.md), so a
common prelude would have to be pasted in by every loader. The few lines
both hold (err, the format version) are copies. What the two agree on (the
fields, the packed gmap, the format versions) is the contract of
docs/FORMAT.md, which the store tests check by writing with one script and
reading with the other.
]]

local FORMAT = '3'
local CHG_RING = 64 -- change records kept (chg:0..chg:63)
local root = KEYS[1]
local fmt = string.format
local pack = struct.pack
local unpack_values = struct.unpack

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
-- gmap: the groups packed for the scoring script (docs/FORMAT.md): their
-- count, then per group its size, 1 if optional (else 0) and its feature
-- indexes, as LE uint16.
local npat, cont, ingroup, gmap = 1, {}, {}, { #groups }
for gi = 1, #groups do
  local grp = type(groups[gi]) == 'table' and groups[gi].features
  if type(grp) ~= 'table' or #grp < 1 then return err('BADARG', 'group %d has no features', gi) end
  local optional = groups[gi].optional == true
  gmap[#gmap + 1] = #grp
  gmap[#gmap + 1] = optional and 1 or 0
  for _, f in ipairs(grp) do
    if type(f) ~= 'number' or f ~= math.floor(f) or f < 0 or f >= d or ingroup[f] then
      return err('BADARG', 'group %d has a bad or repeated feature index', gi)
    end
    ingroup[f] = true
    gmap[#gmap + 1] = f
  end
  npat = npat * (#grp + (optional and 1 or 0))
end
gmap = pack('<' .. string.rep('H', #gmap), unpack(gmap))
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
local vecb, matb = 8 * d, 8 * d * d
local ncol = d + d * (d + 1) / 2 -- values per row r:<id>
local nc = #cont
local ncv = nc + nc * (nc + 1) / 2 -- continuous values per arm: theta_c, then A^-1 over C
local pw = 2 + nc -- values per arm and pattern
local frowb = npat > 0 and 8 * (ncv + patvals) or 0
-- Folded rows f:<part>:<id>: the continuous values, then the values of fq
-- consecutive patterns (fewer in the last part), fq chosen so that a row
-- carries about FROW_TARGET bytes of pattern values: a candidate costs
-- Redis and Lua time in proportion to the bytes of its row.
local FROW_TARGET = 256
local fq, nparts = 0, 0
local fprefix, ffrom, fto = {}, {}, {} -- per part: field prefix, byte range in frow
if npat > 0 then
  nparts = math.ceil(npat * 8 * pw / FROW_TARGET)
  fq = math.ceil(npat / nparts)
  nparts = math.ceil(npat / fq)
  for part = 1, nparts do
    fprefix[part] = 'f:' .. (part - 1) .. ':'
    ffrom[part] = 8 * ncv + (part - 1) * fq * 8 * pw + 1
    fto[part] = 8 * ncv + math.min(part * fq, npat) * 8 * pw
  end
end
-- frows appends to out the HSET arguments of the rows of the arm id whose
-- folded values are frow (frowb bytes).
local function frows(out, id, frow)
  local cv = string.sub(frow, 1, 8 * ncv)
  local o = #out
  for part = 1, nparts do
    out[o + 1] = fprefix[part] .. id
    out[o + 2] = cv .. string.sub(frow, ffrom[part], fto[part])
    o = o + 2
  end
end
-- widths[k]: bytes per arm of the k-th field of a block, and of the k-th
-- transposed blob.
local widths = {}
for k = 1, ncol do widths[k] = 8 end
if npat > 0 then
  widths[ncol + 1] = 8 * nc -- c:<b>
  widths[ncol + 2] = 8 * (ncv - nc) -- a:<b>
  for k = 1, npat do
    widths[ncol + 1 + 2 * k] = 8 -- p:<b>:<k-1>
    widths[ncol + 2 + 2 * k] = 8 * (pw - 1) -- w:<b>:<k-1>
  end
end
if #ARGV ~= p - 1 + R * m + #widths then
  return err('BADARG', 'expected %d arm records of %d values for %d arm keys, then %d blobs', m, R, m, #widths)
end
local T = {}
for k = 1, #widths do
  T[k] = ARGV[p - 1 + R * m + k]
  if #T[k] ~= widths[k] * m then return err('BADARG', 'transposed blob %d has the wrong length', k) end
end

-- Checks: the model's identity, the guards, every arm's version and blobs.
local meta = redis.call('HMGET', root, 'format', 'dim', 'lambda', 'features', 'block', 'arms', 'groups', 'rewards', 'fpats', 'gmap', 'events', 'invalid', 'wseq')
local exists = meta[1] ~= false
local migrate = exists and meta[1] == '2' -- format 2: one row f:<id> per arm
if exists then
  if meta[1] ~= FORMAT and not migrate then return err('BADMODEL', '%s has format %s, not %s', root, meta[1], FORMAT) end
  if meta[2] ~= tostring(d) then return err('BADMODEL', '%s has dimension %s, not %d', root, tostring(meta[2]), d) end
  if tonumber(meta[3]) ~= tonumber(lambda) then return err('BADMODEL', '%s has lambda %s, not %s', root, tostring(meta[3]), lambda) end
  if meta[4] ~= features then return err('BADMODEL', '%s has features %s, not %s', root, tostring(meta[4]), features) end
  if (meta[7] or '[]') ~= groupsjson then return err('BADMODEL', '%s has groups %s, not %s', root, tostring(meta[7] or '[]'), groupsjson) end
  B = int(meta[5])
  if not B or B < 1 then return err('BADMODEL', '%s has a malformed block size', root) end
end
local narms = exists and int(meta[6]) or 0
if not narms then return err('BADMODEL', '%s has a malformed arm count', root) end
local narms0 = narms -- before this call's new arms
if exists and not migrate and npat > 0 and meta[9] ~= tostring(fq) then
  return err('BADMODEL', '%s has %s patterns per folded row, not %d', root, tostring(meta[9]), fq)
end
-- A format 2 model's rows f:<id> become rows f:<part>:<id> (checked here,
-- rewritten with the other writes).
local oldrows = {}
if migrate and npat > 0 then
  for i = 0, narms - 1 do
    local id = redis.call('HGET', root, 'id:' .. i)
    if not id then return err('BADMODEL', 'arm %d of %s has no id', i, root) end
    local n = redis.call('HSTRLEN', root, 'f:' .. id)
    if n ~= frowb then
      return err('BADMODEL', 'row f:%s of %s has %d bytes, want %d', id, root, n, frowb)
    end
    oldrows[#oldrows + 1] = id
  end
  -- ... and its block rows c:<b> and p:<b>:<P>, each arm's values
  -- together, are split in two (oldblock below).
  for blk = 0, math.ceil(narms / B) - 1 do
    local cnt = math.min(B, narms - blk * B)
    if redis.call('HSTRLEN', root, 'c:' .. blk) ~= 8 * ncv * cnt then
      return err('BADMODEL', 'row c:%d of %s has the wrong length', blk, root)
    end
    for pid = 0, npat - 1 do
      if redis.call('HSTRLEN', root, 'p:' .. blk .. ':' .. pid) ~= 8 * pw * cnt then
        return err('BADMODEL', 'row p:%d:%d of %s has the wrong length', blk, pid, root)
      end
    end
  end
end
-- unzip splits blob, cnt slots of w1 + w2 bytes, into the blob of the
-- slots' first w1 bytes and the blob of their last w2 bytes.
local function unzip(blob, cnt, w1, w2)
  local x, y, o = {}, {}, 1
  for i = 1, cnt do
    x[i] = string.sub(blob, o, o + w1 - 1)
    y[i] = string.sub(blob, o + w1, o + w1 + w2 - 1)
    o = o + w1 + w2
  end
  return table.concat(x), table.concat(y)
end
-- oldblock returns the block rows of block blk of a format 2 model (cnt
-- arms, checked above) in format 3, by field name: c:/a: from c:, and
-- p:/w: from each p:.
local function oldblock(blk, cnt)
  local fields = { 'c:' .. blk }
  for pid = 0, npat - 1 do fields[pid + 2] = 'p:' .. blk .. ':' .. pid end
  local old = redis.call('HMGET', root, unpack(fields))
  local out = {}
  out['c:' .. blk], out['a:' .. blk] = unzip(old[1], cnt, 8 * nc, 8 * (ncv - nc))
  for pid = 0, npat - 1 do
    out['p:' .. blk .. ':' .. pid], out['w:' .. blk .. ':' .. pid] = unzip(old[pid + 2], cnt, 8, 8 * (pw - 1))
  end
  return out
end
local total = tonumber(meta[8] or '0')
if not total then return err('BADMODEL', '%s has a malformed reward sum', root) end
-- The counters HINCRBY adds to after the arms are written: a value it
-- refuses would fail the call half-way (Redis keeps what a script wrote
-- before an error).
for i, f in ipairs({ 'events', 'invalid' }) do
  local v = meta[10 + i]
  if v and v ~= '0' and not (#v <= 18 and string.match(v, '^%-?[1-9]%d*$')) then
    return err('BADMODEL', '%s has a malformed %s count %s', root, f, v)
  end
end

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
    a = ARGV[o + 5], b = ARGV[o + 6], row = ARGV[o + 7], ainv = ARGV[o + 8], frow = ARGV[o + 9], q = i,
  }
  local rsum = tonumber(arm.r)
  if arm.id == '' or not int(arm.n) or not rsum or rsum ~= rsum or rsum < 0 or rsum == math.huge or #arm.a ~= matb or #arm.b ~= vecb or #arm.row ~= 8 * ncol or #arm.ainv ~= matb
      or #arm.frow ~= frowb then
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
  if cur[1] then
    arm.idx = int(cur[2])
    if not arm.idx or arm.idx >= narms0 then
      return err('BADMODEL', '%s has index %s, but %s has %d arms (a root deleted without its arm hashes?)', arm.key, tostring(cur[2]), root, narms0)
    end
  end
  arms[i] = arm
end
-- The product index must agree: a stored arm at its index, a new one not
-- indexed yet (else the write would give a product a second index).
for from = 1, m, 1000 do -- HMGET in slices: unpack() of many values overflows Lua's C stack
  local to = math.min(from + 999, m)
  local ixf = {}
  for i = from, to do ixf[#ixf + 1] = 'ix:' .. arms[i].id end
  local ix = redis.call('HMGET', root, unpack(ixf))
  for i = from, to do
    local arm, have = arms[i], ix[i - from + 1]
    if have ~= (arm.idx and tostring(arm.idx) or false) then
      return err('BADMODEL', '%s indexes product %s at %s, its arm hash at %s', root, arm.id, tostring(have), tostring(arm.idx))
    end
  end
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
-- A^-1_ij for the arms of block b, one double per arm in index order: the
-- values of the arms' rows r:<id>, transposed. Models with one-hot groups
-- also have rows (docs/FORMAT.md): c:<b> holds theta_c and a:<b> A^-1
-- over the continuous features of the arms of block b, one arm after the
-- other in index order; p:<b>:<pattern> holds each arm's theta_P and
-- w:<b>:<pattern> its W_P and V_P,c; f:<part>:<id> hold one arm's
-- continuous values and its values for a run of patterns.
local cols = {}
for i = 0, d - 1 do cols[#cols + 1] = 't:%d:' .. i end
for i = 0, d - 1 do
  for j = i, d - 1 do cols[#cols + 1] = 'q:%d:' .. i .. ':' .. j end
end
local zero8 = pack('<d', 0)
-- runsof returns the runs of touched (a block's written arms, in slot
-- order) that are consecutive both in slots and in records, as {first
-- slot, last slot, first record, last record}, and in runs.qlo..runs.qhi
-- the records they span: found once per block, used for every field of it.
local function runsof(touched)
  local runs, t = { qlo = math.huge, qhi = 0 }, 1
  while t <= #touched do
    local e = t
    while e < #touched and touched[e + 1].slot == touched[e].slot + 1 and touched[e + 1].q == touched[e].q + 1 do
      e = e + 1
    end
    runs[#runs + 1] = { touched[t].slot, touched[e].slot, touched[t].q, touched[e].q }
    runs.qlo, runs.qhi = math.min(runs.qlo, touched[t].q), math.max(runs.qhi, touched[e].q)
    t = e + 1
  end
  return runs
end
local DFMT = {} -- DFMT[n]: the struct format of n little-endian doubles
local function dfmt(n)
  local f = DFMT[n]
  if not f then
    f = '<' .. string.rep('d', n)
    DFMT[n] = f
  end
  return f
end
-- build returns a block's blob of cnt slots of width bytes: the slots of
-- the runs (runsof) from src, where the arm of record q has bytes
-- (q-1)*width + 1 .. q*width, the other slots as in old (zeros past its
-- end), copying run by run or, with many runs, value by value. nil if old
-- is malformed.
local function build(old, cnt, width, runs, src)
  if width == 0 then return '' end
  local have = 0
  if old then
    have = #old / width
    if have ~= math.floor(have) or have > cnt then return nil end
  end
  local nv = width / 8
  local qlo, qhi = runs.qlo, runs.qhi -- the records the runs take their values from
  if cnt * nv < 8 * #runs and cnt * nv <= 4000 and (qhi - qlo + 1) * nv <= 4000 then
    -- Many runs for the field's size (a partial write of many arms):
    -- splicing makes a string per run and per gap, and a string costs
    -- several times what decoding the old and the sent values (one call
    -- each) and encoding the result once cost per value.
    -- At most 4,000 values: unpack and pack hold them all on Lua's stack.
    local vals = { unpack_values(dfmt(have * nv), old or '') }
    for i = have * nv + 1, cnt * nv do vals[i] = 0 end
    local new = { unpack_values(dfmt((qhi - qlo + 1) * nv), src, (qlo - 1) * width + 1) }
    for _, r in ipairs(runs) do
      local o, f = (r[1] - 1) * nv, (r[3] - qlo) * nv
      for i = 1, (r[2] - r[1] + 1) * nv do vals[o + i] = new[f + i] end
    end
    return pack(dfmt(cnt * nv), unpack(vals, 1, cnt * nv))
  end
  local parts, pos = {}, 1
  local function keep(from, to) -- slots from..to as they were
    if from > to then return end
    if from <= have then parts[#parts + 1] = string.sub(old, (from - 1) * width + 1, math.min(to, have) * width) end
    if to > have then parts[#parts + 1] = string.rep(zero8, (to - math.max(from, have + 1) + 1) * width / 8) end
  end
  for _, r in ipairs(runs) do
    keep(pos, r[1] - 1)
    parts[#parts + 1] = string.sub(src, (r[3] - 1) * width + 1, r[4] * width)
    pos = r[2] + 1
  end
  keep(pos, cnt)
  return table.concat(parts)
end
local colwrites = {}
for _, blk in ipairs(blocks) do
  local cnt = math.min(B, narms - blk * B)
  local touched = byblock[blk]
  table.sort(touched, function(a, b) return a.idx < b.idx end)
  for t = 1, #touched do touched[t].slot = touched[t].idx - blk * B + 1 end
  local fields = {}
  for c = 1, ncol do fields[c] = fmt(cols[c], blk) end
  if npat > 0 then
    fields[ncol + 1], fields[ncol + 2] = 'c:' .. blk, 'a:' .. blk
    for pid = 0, npat - 1 do
      fields[ncol + 3 + 2 * pid], fields[ncol + 4 + 2 * pid] = 'p:' .. blk .. ':' .. pid, 'w:' .. blk .. ':' .. pid
    end
  end
  -- A block whose every slot is rewritten needs none of its old values.
  local old = {}
  local cnt0 = math.min(B, narms0 - blk * B) -- its arms before this call
  if #touched == cnt then
    old = {}
  elseif migrate and npat > 0 then
    old = redis.call('HMGET', root, unpack(fields, 1, ncol))
    if cnt0 > 0 then
      local rows = oldblock(blk, cnt0)
      for k = ncol + 1, #fields do old[k] = rows[fields[k]] end
    end
  else
    old = redis.call('HMGET', root, unpack(fields))
  end
  -- A call that writes exactly this block's arms, in slot order (one run
  -- over every slot, from the first record), sends each field's new value
  -- as it is: no copy.
  local runs = runsof(touched)
  local whole = m == cnt and #runs == 1 and runs[1][1] == 1 and runs[1][2] == cnt
  local out = {}
  for k = 1, #fields do
    local blob = whole and T[k] or build(old[k] or nil, cnt, widths[k], runs, T[k])
    if not blob then return err('BADMODEL', 'field %s of %s has the wrong length', fields[k], root) end
    out[#out + 1] = fields[k]
    out[#out + 1] = blob
  end
  colwrites[#colwrites + 1] = out
end

-- Writes.
if not exists then
  redis.call('HSET', root, 'format', FORMAT, 'dim', d, 'lambda', lambda, 'features', features, 'groups', groupsjson, 'block', B)
end
if npat > 0 and meta[10] ~= gmap then
  -- At creation, or first written here for a model created without it.
  redis.call('HSET', root, 'gmap', gmap)
end
if migrate then
  -- One arm at a time (the catalogue's rows together could be large).
  for _, id in ipairs(oldrows) do
    local out = {}
    frows(out, id, redis.call('HGET', root, 'f:' .. id))
    redis.call('HSET', root, unpack(out))
    redis.call('HDEL', root, 'f:' .. id)
  end
  -- The block rows of the blocks this call does not rewrite.
  for blk = 0, (npat > 0 and math.ceil(narms0 / B) or 0) - 1 do
    if not byblock[blk] then
      local out = {}
      for f, v in pairs(oldblock(blk, math.min(B, narms0 - blk * B))) do
        out[#out + 1] = f
        out[#out + 1] = v
      end
      for from = 1, #out, 2000 do
        redis.call('HSET', root, unpack(out, from, math.min(from + 1999, #out)))
      end
    end
  end
  redis.call('HSET', root, 'format', FORMAT)
end
if npat > 0 and (not exists or migrate) then redis.call('HSET', root, 'fpats', fq) end
for _, arm in ipairs(newarms) do
  redis.call('HSET', root, 'id:' .. arm.idx, arm.id, 'ix:' .. arm.id, arm.idx)
end
local versions, rows = {}, {}
for i = 1, m do
  local arm = arms[i]
  local ver = tonumber(arm.ver) + 1
  versions[i] = ver
  redis.call('HSET', arm.key, 'idx', arm.idx, 'ver', ver, 'n', arm.n, 'rewards', arm.r, 'a', arm.a, 'b', arm.b,
    'theta', string.sub(arm.row, 1, vecb), 'ainv', arm.ainv, 'updated_ms', now)
  rows[#rows + 1] = 'r:' .. arm.id
  rows[#rows + 1] = arm.row
  if npat > 0 then frows(rows, arm.id, arm.frow) end
end
colwrites[#colwrites + 1] = rows
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
-- The change record (docs/FORMAT.md): this write's number and the indexes
-- of the arms it wrote, so that a reader holding a copy of the model
-- reloads only those. A wseq that is not a count restarts it (readers
-- then reload everything).
local wseq = (int(meta[13]) or 0) + 1
local changed = {}
for i = 1, m do changed[i] = arms[i].idx end
redis.call('HSET', root, 'wseq', fmt('%d', wseq), 'chg:' .. fmt('%d', wseq % CHG_RING), fmt('%d', wseq) .. ':' .. table.concat(changed, ','))
return versions
