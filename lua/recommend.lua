#!lua flags=no-writes
--[[
redbandit recommend: the top-k products of a LinUCB model for one context.

  EVALSHA <sha> 1 rb:{M} <k> <alpha> <x_1> ... <x_d> [CANDIDATES <n> <id>...] [EXCLUDE <n> <id>...]
  FCALL_RO rb_recommend 1 rb:{M} <k> <alpha> <x_1> ... <x_d> [options]

KEYS[1]   the model root hash rb:{M}; the only key read.
ARGV[1]   k, an integer >= 1: how many products to return (fewer if the
          model or the candidate list has fewer).
ARGV[2]   alpha, a finite number >= 0: the weight of the exploration bonus.
ARGV[3..] the d context values x_1..x_d (d is the model's dimension), then
          any of these options, each at most once, keywords case-insensitive:
  CANDIDATES <n> <id_1>..<id_n>  score only these products, in this order of
          precedence on ties; a product the model has never seen is scored
          as a fresh arm (theta = 0, A^-1 = I/lambda). Duplicates count once.
  EXCLUDE <n> <id_1>..<id_n>     never return these products; unknown ids
          are ignored.

Reply: a flat array id_1, score_1, ..., id_k, score_k, best first. Scores are
decimal strings with 17 significant digits (Lua numbers returned to Redis
would be truncated to integers). Equal scores keep the model's arm order
(or the candidate order).

score = x.theta + alpha * sqrt(x' A^-1 x), computed over the non-zero
entries of x only, from the columnar layout described in docs/FORMAT.md; if
the model declares one-hot groups and x is one-hot in each, from rows of
per-arm values folded for x's pattern instead (and for a candidate list,
from per-product rows).

Errors (returned as Redis errors, never raised):
  NOMODEL  no model at KEYS[1]
  BADMODEL the model's data is missing, malformed or of another format version
           (this script reads formats 2 and 3)
  BADARG   a malformed call: wrong number of context values, a value that is
           not a finite number, k < 1, alpha < 0, an unknown option, a
           context or alpha so large that the scores would overflow.
]]

local FORMAT = '3' -- and '2', scored from its general layout (docs/FORMAT.md)
local root = KEYS[1]
local huge = math.huge
local sqrt = math.sqrt
local tonumber, tostring = tonumber, tostring
local fmt = string.format
local unpack_values = struct.unpack
local MEANS8, PATS8 = '<' .. string.rep('d', 24), '<dddddddd' -- theta_c and theta_P of 8 arms (three continuous features)

-- Decimal strings of 0..63, so that building the general layout's many
-- field names formats no numbers (Lua's number-to-string conversion is a
-- sprintf); made only when that layout is read.
local DEC
local function decimals()
  DEC = {[0]='0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63'}
end
local function dec(i)
  return DEC and DEC[i] or tostring(i)
end

local function err(code, msg, ...)
  return redis.error_reply(code .. ' ' .. fmt(msg, ...))
end

local function finite(v)
  return v ~= nil and v == v and v ~= huge and v ~= -huge
end

local function integer(s)
  if s == nil then return nil end
  local v = tonumber(s)
  if v == nil or v ~= v or v == huge or v == -huge or v ~= math.floor(v) then return nil end
  return v
end

if root == nil then
  return err('BADARG', 'expected 1 key (the model root rb:{M}), got 0')
end

local meta = redis.call('HMGET', root, 'format', 'dim', 'lambda', 'arms', 'block', 'groups', 'fpats', 'gmap')
if not meta[1] then
  return err('NOMODEL', 'no model at %s', root)
end
if meta[1] ~= FORMAT and meta[1] ~= '2' then
  return err('BADMODEL', '%s has format %s, this script reads formats 2 and %s', root, tostring(meta[1]), FORMAT)
end
local d, lambda, n, B = integer(meta[2]), tonumber(meta[3]), integer(meta[4]), integer(meta[5])
if not d or d < 1 or not finite(lambda) or lambda <= 0 or not n or n < 0 or not B or B < 1 then
  return err('BADMODEL', '%s has malformed metadata (dim, lambda, arms, block)', root)
end

-- Arguments.
local nargs = #ARGV
if nargs < 2 + d then
  return err('BADARG', 'expected k, alpha and %d context values, got %d context values', d, math.max(nargs - 2, 0))
end
local k = integer(ARGV[1])
if not k or k < 1 then
  return err('BADARG', 'k must be an integer >= 1, got %s', ARGV[1])
end
local alpha = tonumber(ARGV[2])
if not finite(alpha) or alpha < 0 then
  return err('BADARG', 'alpha must be a finite number >= 0, got %s', ARGV[2])
end
local x, S = {}, {}
for i = 1, d do
  local v = tonumber(ARGV[2 + i])
  if not finite(v) then
    return err('BADARG', 'context value %d (%s) is not a finite number', i, ARGV[2 + i])
  end
  x[i] = v
  if v ~= 0 then S[#S + 1] = i end
end
-- |x|^2 / lambda bounds every arm's x' A^-1 x: a fresh arm's exactly, the
-- others' from above, since every arm's A = lambda I + sum x x' is at least
-- lambda I. So score <= mean + bound with bound = alpha |x| / sqrt(lambda)
-- (widened by 1e-6 against rounding). Once the top-k is full, an arm with
-- mean + bound <= the k-th score could not enter it (entry needs a strictly
-- better score): the scan and the candidate path decode only its mean.
-- The result is the same as scoring every arm, ties included.
local xx = 0
for p = 1, #S do xx = xx + x[S[p]] * x[S[p]] end
local xxl = xx / lambda
local bound = alpha * xxl ^ 0.5 * (1 + 1e-6)
-- Finite inputs whose scores would overflow (a sum over up to |S|^2 terms
-- of |x|^2 / lambda, or the bonus bound) have no answer: an infinite or NaN
-- score would rank wrongly or drop arms.
if not finite(xxl * (#S * #S + 1)) or not finite(bound) then
  return err('BADARG', 'context or alpha too large: the scores would overflow a double')
end

-- The options' lists stay in ARGV: cfrom..cto the candidates', efrom..eto
-- the exclusions' (empty ranges if not given).
local cfrom, cto, efrom, eto
local pos = 3 + d
while pos <= nargs do
  local opt = string.upper(ARGV[pos])
  if opt ~= 'CANDIDATES' and opt ~= 'EXCLUDE' then
    if tonumber(ARGV[pos]) then
      return err('BADARG', 'too many context values: the model has dimension %d', d)
    end
    return err('BADARG', 'unknown option %s (expected CANDIDATES or EXCLUDE)', ARGV[pos])
  end
  local cnt = integer(ARGV[pos + 1])
  if not cnt or cnt < 0 or pos + 1 + cnt > nargs then
    return err('BADARG', '%s must be followed by a count and that many ids', opt)
  end
  if opt == 'CANDIDATES' then
    if cfrom then return err('BADARG', 'CANDIDATES given twice') end
    cfrom, cto = pos + 2, pos + 1 + cnt
  else
    if efrom then return err('BADARG', 'EXCLUDE given twice') end
    efrom, eto = pos + 2, pos + 1 + cnt
  end
  pos = pos + 2 + cnt
end

-- excluded holds the ids never to return; the candidate path also adds
-- each candidate it has taken, so that duplicates count once.
local excluded = {}
if efrom then
  for i = efrom, eto do excluded[ARGV[i]] = true end
end

-- The top-k so far: items (arm indexes or candidate positions, offered in
-- increasing order) and their scores. A new score enters only if strictly
-- better than the k-th, so ties keep the order of arrival. Up to HEAPK it is
-- a list kept sorted, best first (an insertion costs O(k): cheapest for the
-- few items a page shows); beyond, a binary min-heap whose root is the entry
-- a better score evicts (O(log k) per entry), sorted once by ranked(). A
-- sorted list made k = 1,000 of 20,000 products cost ~330 ms and k = 5,000
-- ~3.6 s, during which Redis serves nothing else.
local HEAPK = 32
local best, bests = {}, {}
local bar = -huge -- the score to beat once the top-k is full
local offer
if k <= HEAPK then
  offer = function(item, s)
    local m = #best
    if m == k then
      if not (s > bests[m]) then return end
    else
      m = m + 1
    end
    while m > 1 and bests[m - 1] < s do
      best[m], bests[m] = best[m - 1], bests[m - 1]
      m = m - 1
    end
    best[m], bests[m] = item, s
    if #best == k then bar = bests[k] end
  end
else
  -- below(i, j): entry i ranks below entry j (a lower score, or the same
  -- score and a later arrival).
  local function below(i, j)
    local si, sj = bests[i], bests[j]
    return si < sj or (si == sj and best[i] > best[j])
  end
  local function swap(i, j)
    best[i], best[j] = best[j], best[i]
    bests[i], bests[j] = bests[j], bests[i]
  end
  offer = function(item, s)
    local m = #best
    if m < k then
      m = m + 1
      best[m], bests[m] = item, s
      while m > 1 do -- sift up
        local p = (m - m % 2) / 2
        if not below(m, p) then break end
        swap(m, p)
        m = p
      end
      if #best == k then bar = bests[1] end
      return
    end
    if not (s > bests[1]) then return end
    best[1], bests[1] = item, s
    local i = 1
    while true do -- sift down
      local l, low = 2 * i, i
      if l <= m and below(l, low) then low = l end
      if l + 1 <= m and below(l + 1, low) then low = l + 1 end
      if low == i then break end
      swap(i, low)
      i = low
    end
    bar = bests[1]
  end
end

-- ranked puts the top-k in order, best first (ties in order of arrival).
local function ranked()
  if k <= HEAPK then return end
  local order = {}
  for i = 1, #best do order[i] = i end
  table.sort(order, function(a, b)
    local sa, sb = bests[a], bests[b]
    return sa > sb or (sa == sb and best[a] < best[b])
  end)
  local b, s = {}, {}
  for i, j in ipairs(order) do b[i], s[i] = best[j], bests[j] end
  best, bests = b, s
end

-- hmget returns the values of the root's fields (a list) in order: one
-- HMGET, or one per 4,000 fields for longer lists (unpack() of about 8,000
-- values overflows Lua's C stack).
local function hmget(fields)
  if #fields <= 4000 then return redis.call('HMGET', root, unpack(fields)) end
  local out = {}
  for from = 1, #fields, 4000 do
    local part = redis.call('HMGET', root, unpack(fields, from, math.min(from + 3999, #fields)))
    for i = 1, #part do out[from + i - 1] = part[i] end
  end
  return out
end

local function reply(ids)
  local out = {}
  for i = 1, #best do
    out[2 * i - 1] = ids[i]
    out[2 * i] = fmt('%.17g', bests[i])
  end
  return out
end

local ns = #S

-- One-hot groups (docs/FORMAT.md): if the model declares them and x has
-- exactly one 1 (and otherwise zeros) in every group (at most one in an
-- optional group), x's pattern pid selects per-arm folded values, and the
-- score needs only those and the continuous features' (the features in no
-- group): per arm, nc + nc(nc+1)/2 continuous values (theta_c, then A^-1 over
-- them, upper triangle row by row) and 2 + nc pattern values (theta_P, W_P,
-- V_P,c), stored as rows.
local fast, pid = false, 0
local cont, nc, ntri = {}, 0, 0
local npat = 0
if meta[6] and meta[6] ~= '[]' then
  -- gv: the groups as numbers: their count, then per group its size, 1 if
  -- optional (else 0) and its 0-based feature indexes; from the packed
  -- field gmap (one struct.unpack), else decoded from the JSON in groups
  -- (a model whose writer did not add gmap; several microseconds more).
  local gv
  local gmap = meta[8]
  if gmap then
    if #gmap % 2 ~= 0 or #gmap < 2 or #gmap > 2 * (1 + 3 * d) then -- a count, and at most 2 + 1 values per feature
      return err('BADMODEL', '%s has a malformed gmap', root)
    end
    gv = { unpack_values('<' .. string.rep('H', #gmap / 2), gmap) }
    gv[#gv] = nil -- struct.unpack's next position
  else
    local ok, groups = pcall(cjson.decode, meta[6])
    if not ok or type(groups) ~= 'table' then
      return err('BADMODEL', '%s has malformed groups', root)
    end
    gv = { #groups }
    for g = 1, #groups do
      if type(groups[g]) ~= 'table' or type(groups[g].features) ~= 'table' then
        return err('BADMODEL', '%s has malformed groups', root)
      end
      local grp = groups[g].features
      gv[#gv + 1] = #grp
      gv[#gv + 1] = groups[g].optional == true and 1 or 0
      for p = 1, #grp do gv[#gv + 1] = grp[p] end
    end
  end
  local ingroup, stride, at = {}, 1, 2
  fast = true
  for g = 1, gv[1] do
    local size, optional = gv[at], gv[at + 1] == 1
    if not size or at + 1 + size > #gv then
      return err('BADMODEL', '%s has malformed groups', root)
    end
    local pos = nil
    for p = 1, size do
      local f = gv[at + 1 + p]
      if type(f) ~= 'number' or f < 0 or f >= d then
        return err('BADMODEL', '%s has malformed groups', root)
      end
      local v = x[f + 1]
      ingroup[f + 1] = true
      if v ~= 0 then
        if v ~= 1 or pos then fast = false end
        pos = p - 1
      end
    end
    if not pos then
      if optional then pos = size else fast = false end -- the "none" digit
    end
    pid = pid + (pos or 0) * stride
    stride = stride * (size + (optional and 1 or 0))
    at = at + 2 + size
  end
  if at ~= #gv + 1 then
    return err('BADMODEL', '%s has malformed groups', root)
  end
  npat = stride
  for i = 1, d do
    if not ingroup[i] then cont[#cont + 1] = i end
  end
  nc = #cont
  ntri = nc * (nc + 1) / 2
  -- Rows hold every continuous feature, columns only x's non-zero entries:
  -- use the rows unless they are much longer (a value in a row costs about
  -- half a column term).
  fast = fast and 2 + 2 * nc + ntri <= 2 * (ns + ns * (ns + 1) / 2)
  -- A format 2 model's rows are laid out otherwise: its general layout
  -- serves until its next write migrates it (docs/FORMAT.md).
  fast = fast and meta[1] == FORMAT
end

local xc, qc = {}, {} -- x over the continuous features; their quadratic coefficients
local cbytes, pbytes
local tfmt, afmt, vfmt -- theta_c, A^-1 over the continuous features, W_P and V_P,c
if fast then
  for i = 1, nc do xc[i] = x[cont[i]] end
  for i = 1, nc do
    for j = i, nc do qc[#qc + 1] = (i == j) and xc[i] * xc[i] or 2 * xc[i] * xc[j] end
  end
  cbytes, pbytes = 8 * (nc + ntri), 8 * (2 + nc)
  tfmt, afmt, vfmt = '<' .. string.rep('d', nc), '<' .. string.rep('d', ntri), '<' .. string.rep('d', 1 + nc)
end

-- foldedmean returns theta_P + xc . theta_c from theta_P, and the arm's
-- theta_c starting at byte co of tc; foldedquad returns its x' A^-1 x from
-- its A^-1 over the continuous features at byte ao of ta and its W_P, V_P,c
-- at byte wo of tw. Both sum in the order of the specialised code for three
-- continuous features.
local function foldedmean(tp, tc, co)
  local tv = { unpack_values(tfmt, tc, co) }
  local mean = tp
  for i = 1, nc do mean = mean + xc[i] * tv[i] end
  return mean
end
local function foldedquad(ta, ao, tw, wo)
  local av = { unpack_values(afmt, ta, ao) }
  local pv = { unpack_values(vfmt, tw, wo) }
  local q = pv[1]
  for i = 1, nc do q = q + 2 * xc[i] * pv[1 + i] end
  for t = 1, ntri do q = q + qc[t] * av[t] end
  return q
end

if cfrom then
  local prior = alpha * sqrt(xxl) -- a fresh arm's score
  -- Each candidate's row: prefix .. id, rowlen bytes; rowmean(row) its
  -- mean, rowquad(row) its x' A^-1 x.
  local prefix, rowlen, rowmean, rowquad
  if fast then
    -- Folded rows f:<part>:<id> = the continuous values (theta_c, then A^-1
    -- over them), then those of fq patterns from part * fq on.
    local fq = integer(meta[7])
    if not fq or fq < 1 then
      return err('BADMODEL', '%s has a malformed fpats', root)
    end
    local part = math.floor(pid / fq)
    prefix = 'f:' .. part .. ':'
    local po = cbytes + (pid - part * fq) * pbytes + 1
    rowlen = cbytes + math.min(fq, npat - part * fq) * pbytes
    rowmean = function(row) return foldedmean(unpack_values('<d', row, po), row, 1) end
    rowquad = function(row) return foldedquad(row, 8 * nc + 1, row, po + 8) end
    if nc == 3 then
      -- The reference shop's: every value in a local, as in scan_rows
      -- (the same sums in the same order).
      local x1, x2, x3 = xc[1], xc[2], xc[3]
      local y1, y2, y3 = 2 * x1, 2 * x2, 2 * x3
      local q11, q12, q13, q22, q23, q33 = qc[1], qc[2], qc[3], qc[4], qc[5], qc[6]
      rowmean = function(row)
        local t1, t2, t3 = unpack_values('<ddd', row)
        return unpack_values('<d', row, po) + x1 * t1 + x2 * t2 + x3 * t3
      end
      rowquad = function(row)
        local a11, a12, a13, a22, a23, a33 = unpack_values('<dddddd', row, 25)
        local wp, v1, v2, v3 = unpack_values('<dddd', row, po + 8)
        return wp + y1 * v1 + y2 * v2 + y3 * v3 + q11 * a11 + q12 * a12 + q13 * a13 + q22 * a22 + q23 * a23 + q33 * a33
      end
    end
  else
    -- Rows r:<id> = theta (d doubles) .. upper triangle of A^-1 (row-major).
    local dtri = d * (d + 1) / 2
    prefix, rowlen = 'r:', 8 * (d + dtri)
    -- Positions (1-based, in doubles) of A^-1_ij in the triangle, and the
    -- quadratic-form coefficients: x_i^2 on the diagonal, 2 x_i x_j above.
    local qpos, qcoef = {}, {}
    for p = 1, ns do
      local i = S[p]
      for q = p, ns do
        local j = S[q]
        qpos[#qpos + 1] = (i - 1) * d - (i - 1) * (i - 2) / 2 + (j - i) + 1
        qcoef[#qcoef + 1] = (i == j) and x[i] * x[i] or 2 * x[i] * x[j]
      end
    end
    -- Decode a whole part of a row with one call when it is not much longer
    -- than what is needed (one C call per value costs about ten values
    -- decoded in bulk).
    local thetafmt, trifmt = '<' .. string.rep('d', d), '<' .. string.rep('d', dtri)
    if d <= 10 * ns then
      rowmean = function(row)
        local v = { unpack_values(thetafmt, row) }
        local mean = 0
        for p = 1, ns do mean = mean + x[S[p]] * v[S[p]] end
        return mean
      end
    else
      rowmean = function(row)
        local mean = 0
        for p = 1, ns do mean = mean + x[S[p]] * unpack_values('<d', row, 8 * S[p] - 7) end
        return mean
      end
    end
    if dtri <= 10 * #qpos then
      rowquad = function(row)
        local v = { unpack_values(trifmt, row, 8 * d + 1) }
        local quad = 0
        for p = 1, #qpos do quad = quad + qcoef[p] * v[qpos[p]] end
        return quad
      end
    else
      rowquad = function(row)
        local quad = 0
        for p = 1, #qpos do quad = quad + qcoef[p] * unpack_values('<d', row, 8 * (d + qpos[p]) - 7) end
        return quad
      end
    end
  end
  -- The candidates in order, each once, none excluded, with their fields.
  local ids, fields, m = {}, {}, 0
  for i = cfrom, cto do
    local id = ARGV[i]
    if not excluded[id] then
      excluded[id] = true
      m = m + 1
      ids[m], fields[m] = id, prefix .. id
    end
  end
  if m == 0 then return {} end
  local rows = hmget(fields)
  for c = 1, m do
    local row = rows[c]
    if not row then
      -- A product the model has never seen: a fresh arm.
      if prior > bar then offer(c, prior) end
    elseif #row ~= rowlen then
      return err('BADMODEL', 'row %s of %s has %d bytes, want %d', fields[c], root, #row, rowlen)
    else
      local mean = rowmean(row)
      if mean + bound > bar then
        local quad = rowquad(row)
        if quad < 0 then quad = 0 end
        local sc = mean + alpha * quad ^ 0.5
        if sc > bar then offer(c, sc) end
      end
    end
  end
  local out = {}
  ranked()
  for i = 1, #best do out[i] = ids[best[i]] end
  return reply(out)
end

if n == 0 then return {} end

local skip = {}
if efrom and eto >= efrom then
  local fields = {}
  for i = efrom, eto do fields[#fields + 1] = 'ix:' .. ARGV[i] end
  local idx = hmget(fields)
  for i = 1, #idx do
    if idx[i] then
      local v = integer(idx[i])
      if not v or v < 0 or v >= n then
        return err('BADMODEL', 'index ix:%s of %s is malformed', ARGV[efrom + i - 1], root)
      end
      skip[v + 1] = true
    end
  end
end

-- scan_rows offers each of the cnt arms of a block (arm indexes base+1..)
-- scored from its rows: tc holds the arms' theta_c, ta their A^-1 over the
-- continuous features, tp their theta_P for x's pattern, tw their W_P and
-- V_P,c.
--
-- It skips the exploration bonus of arms that cannot make the top-k (see
-- bound): only their means are decoded, 4 values of 14 for the reference
-- shop.
local function scan_rows(tc, ta, tp, tw, cnt, base)
  if nc == 3 then
    -- Three continuous features (the reference shop's): every value in a
    -- local, and the means of eight arms from two struct.unpack calls.
    local x1, x2, x3 = xc[1], xc[2], xc[3]
    local y1, y2, y3 = 2 * x1, 2 * x2, 2 * x3
    local q11, q12, q13, q22, q23, q33 = qc[1], qc[2], qc[3], qc[4], qc[5], qc[6]
    -- full offers arm a of the block, whose mean is m, with its bonus.
    local function full(a, m)
      if skip[base + a] then return end
      local a11, a12, a13, a22, a23, a33 = unpack_values('<dddddd', ta, 48 * a - 47)
      local wp, v1, v2, v3 = unpack_values('<dddd', tw, 32 * a - 31)
      local q = wp + y1 * v1 + y2 * v2 + y3 * v3 + q11 * a11 + q12 * a12 + q13 * a13 + q22 * a22 + q23 * a23 + q33 * a33
      if q < 0 then q = 0 end
      -- q ^ 0.5 is a VM operation; math.sqrt would be a function call per arm.
      local s = m + alpha * q ^ 0.5
      if s > bar then offer(base + a, s) end
    end
    local a = 1
    while a + 7 <= cnt do
      local c11, c12, c13, c21, c22, c23, c31, c32, c33, c41, c42, c43,
        c51, c52, c53, c61, c62, c63, c71, c72, c73, c81, c82, c83 = unpack_values(MEANS8, tc, 24 * a - 23)
      local p1, p2, p3, p4, p5, p6, p7, p8 = unpack_values(PATS8, tp, 8 * a - 7)
      -- Unrolled on purpose: a loop over the eight would need a table.
      local m = p1 + x1 * c11 + x2 * c12 + x3 * c13
      if m + bound > bar then full(a, m) end
      m = p2 + x1 * c21 + x2 * c22 + x3 * c23
      if m + bound > bar then full(a + 1, m) end
      m = p3 + x1 * c31 + x2 * c32 + x3 * c33
      if m + bound > bar then full(a + 2, m) end
      m = p4 + x1 * c41 + x2 * c42 + x3 * c43
      if m + bound > bar then full(a + 3, m) end
      m = p5 + x1 * c51 + x2 * c52 + x3 * c53
      if m + bound > bar then full(a + 4, m) end
      m = p6 + x1 * c61 + x2 * c62 + x3 * c63
      if m + bound > bar then full(a + 5, m) end
      m = p7 + x1 * c71 + x2 * c72 + x3 * c73
      if m + bound > bar then full(a + 6, m) end
      m = p8 + x1 * c81 + x2 * c82 + x3 * c83
      if m + bound > bar then full(a + 7, m) end
      a = a + 8
    end
    while a <= cnt do
      local t1, t2, t3 = unpack_values('<ddd', tc, 24 * a - 23)
      local m = unpack_values('<d', tp, 8 * a - 7) + x1 * t1 + x2 * t2 + x3 * t3
      if m + bound > bar then full(a, m) end
      a = a + 1
    end
    return
  end
  for a = 1, cnt do
    local mean = foldedmean(unpack_values('<d', tp, 8 * a - 7), tc, 8 * nc * (a - 1) + 1)
    if mean + bound > bar and not skip[base + a] then
      local q = foldedquad(ta, 8 * ntri * (a - 1) + 1, tw, 8 * (1 + nc) * (a - 1) + 1)
      if q < 0 then q = 0 end
      local s = mean + alpha * q ^ 0.5
      if s > bar then offer(base + a, s) end
    end
  end
end

-- acc[a] += sum of coef[f] * cols[f][a] for f in from..to. The arithmetic is
-- cheap next to Lua's loop and table overhead, so each pass over the arms
-- folds up to seven columns, with one loop body per width (no padding).
local function accumulate(acc, cnt, cols, coef, from, to)
  local f = from
  while f <= to do
    local w = to - f + 1
    if w > 7 then w = 7 end
    local T1, T2, T3, T4, T5, T6, T7 = cols[f], cols[f + 1], cols[f + 2], cols[f + 3], cols[f + 4], cols[f + 5], cols[f + 6]
    local c1, c2, c3, c4, c5, c6, c7 = coef[f], coef[f + 1], coef[f + 2], coef[f + 3], coef[f + 4], coef[f + 5], coef[f + 6]
    if w == 7 then
      for a = 1, cnt do
        acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] + c3 * T3[a] + c4 * T4[a] + c5 * T5[a] + c6 * T6[a] + c7 * T7[a]
      end
    elseif w == 6 then
      for a = 1, cnt do
        acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] + c3 * T3[a] + c4 * T4[a] + c5 * T5[a] + c6 * T6[a]
      end
    elseif w == 5 then
      for a = 1, cnt do acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] + c3 * T3[a] + c4 * T4[a] + c5 * T5[a] end
    elseif w == 4 then
      for a = 1, cnt do acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] + c3 * T3[a] + c4 * T4[a] end
    elseif w == 3 then
      for a = 1, cnt do acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] + c3 * T3[a] end
    elseif w == 2 then
      for a = 1, cnt do acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] end
    else
      for a = 1, cnt do acc[a] = acc[a] + c1 * T1[a] end
    end
    f = f + w
  end
end

-- Columnar layout (docs/FORMAT.md): t:<b>:<i> holds theta_i and
-- q:<b>:<i>:<j> (i <= j) holds A^-1_ij for the arms of block b, one
-- little-endian double per arm. The score needs, per arm, the terms
-- coef * column over the non-zero entries of x: names[f] is the field suffix
-- of term f; terms 1..ns make the mean x.theta, the rest x' A^-1 x.
local kinds, names, coef = {}, {}, {}
if not fast then
  decimals()
  for p = 1, ns do
    kinds[p], names[p], coef[p] = 't:', ':' .. dec(S[p] - 1), x[S[p]]
  end
  for p = 1, ns do
    local i = S[p]
    for q = p, ns do
      local j = S[q]
      local f = #names + 1
      kinds[f], names[f] = 'q:', ':' .. dec(i - 1) .. ':' .. dec(j - 1)
      coef[f] = (i == j) and x[i] * x[i] or 2 * x[i] * x[j]
    end
  end
end
local nf = #names

local nblocks = math.ceil(n / B)
for blk = 0, nblocks - 1 do
  local cnt = math.min(B, n - blk * B)
  local b = dec(blk)
  local base = blk * B
  if fast then
    local P = dec(pid)
    local raw = redis.call('HMGET', root, 'c:' .. b, 'a:' .. b, 'p:' .. b .. ':' .. P, 'w:' .. b .. ':' .. P)
    if not raw[1] or #raw[1] ~= 8 * nc * cnt or not raw[2] or #raw[2] ~= 8 * ntri * cnt
        or not raw[3] or #raw[3] ~= 8 * cnt or not raw[4] or #raw[4] ~= 8 * (1 + nc) * cnt then
      return err('BADMODEL', 'rows c:%s, a:%s, p:%s:%s or w:%s:%s of %s are missing or have the wrong length', b, b, b, P, b, P, root)
    end
    scan_rows(raw[1], raw[2], raw[3], raw[4], cnt, base)
  else
    local mean, quad = {}, {}
    for a = 1, cnt do mean[a] = 0; quad[a] = 0 end
    if nf > 0 then
      local fields = {}
      for f = 1, nf do fields[f] = kinds[f] .. b .. names[f] end
      local raw = redis.call('HMGET', root, unpack(fields))
      local vfmt = '<' .. string.rep('d', cnt)
      local cols = {}
      for f = 1, nf do
        local v = raw[f]
        if not v or #v ~= 8 * cnt then
          return err('BADMODEL', 'column %s of %s is missing or has the wrong length', fields[f], root)
        end
        cols[f] = { unpack_values(vfmt, v) }
      end
      accumulate(mean, cnt, cols, coef, 1, ns)
      accumulate(quad, cnt, cols, coef, ns + 1, nf)
    end
    for a = 1, cnt do
      local q = quad[a]
      if q < 0 then q = 0 end
      local s = mean[a] + alpha * q ^ 0.5
      if s > bar and not skip[base + a] then offer(base + a, s) end
    end
  end
end

if #best == 0 then return {} end
ranked()
local fields = {}
for i = 1, #best do fields[i] = 'id:' .. dec(best[i] - 1) end
local ids = hmget(fields)
for i = 1, #ids do
  if not ids[i] then
    return err('BADMODEL', 'arm %d of %s has no id', best[i] - 1, root)
  end
end
return reply(ids)
