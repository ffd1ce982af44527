-- The benchmark's inputs (spec/bench/bench.lua): files read whole, tab-separated lines split
-- (the fixtures' expect.tsv, the saved results), the JSON files of a fixtures folder, and the
-- large delivery it generates.
local string_format = string.format
local table_concat = table.concat
local table_sort = table.sort

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then
    return nil, err
  end
  local s = f:read("*a")
  f:close()
  return s
end

local function split_tabs(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    fields[#fields + 1] = field
  end
  return fields
end

local function list_json(dir)
  local names = {}
  local p = io.popen('ls -1 "' .. dir .. '" 2>/dev/null')
  if p then
    for name in p:lines() do
      if name:find("%.json$") then
        names[#names + 1] = name
      end
    end
    p:close()
  end
  table_sort(names)
  return names
end

-- A realistic big delivery: a booking form with 40 questions, long free-text answers in
-- English, Japanese and French (multi-byte UTF-8), escapes (\n, \", \u00e9), multiple-choice
-- lists; about 16 KB. Deterministic, so every runtime parses the same bytes.
local function large_payload(count)
  count = count or 40
  local texts = {
    "We would like to review the renewal of our annual contract, including the seat count for"
      .. " the Osaka office and the data-retention clause in section 4.2.",
    "来月の導入に向けて、予約フローと社内カレンダーの連携について詳しく伺いたいです。"
      .. "担当者は二名、どちらもオンラインで参加します。",
    "Merci de prévoir une démonstration de l’intégration — notre"
      .. " équipe à Zürich sera présente, caf\\u00e9 compris.",
    "Line one of a longer note.\\nLine two, with \\\"quotes\\\" and a tab\\there; emoji"
      .. " 📅 and a yen sign ¥12,000.",
  }
  local answers = {}
  for i = 1, count do
    local content
    if i % 4 == 0 then
      content = { "Option A", "Option C", "その他" }
    else
      local t1 = texts[(i - 1) % #texts + 1]
      local t2 = texts[i % #texts + 1]
      local t3 = i % 2 == 1 and " " .. texts[(i + 1) % #texts + 1] or ""
      content = { t1 .. " " .. t2 .. t3 .. " (" .. i .. ")" }
    end
    local quoted = {}
    for j, s in ipairs(content) do
      quoted[j] = '"' .. s .. '"'
    end
    answers[i] = string_format('    {\n      "question": "Question %d: %s",\n'
        .. '      "content": [%s]\n    }', i,
      i % 2 == 0 and "What would you like to discuss in the meeting?"
        or "ご相談内容を教えて"
        .. "ください",
      table_concat(quoted, ", "))
  end
  return table_concat({
    '{',
    '  "createdAt": "2024-02-29T09:15:00.000Z",',
    '  "event": "guest_booked",',
    '  "object": {',
    '   "uid": "BK7Q2M9X4LZP",',
    '   "eventTypeUid": "ET3RWD8N1",',
    '   "status": "open",',
    '   "timeZone": "Asia/Tokyo",',
    '   "createdAt": "2024-02-29T09:14:58.123Z",',
    '   "updatedAt": "2024-02-29T09:14:58.123+09:00",',
    '   "startedAt": "2024-03-04T01:00:00.000Z",',
    '   "endedAt": "2024-03-04T02:00:00.000Z",',
    '   "cancelReason": null,',
    '   "cancelledAt": null,',
    '   "cancelledBy": null,',
    '   "contact": {"email": "hanako.yamada@example.co.jp", "name": "山田 花子"},',
    '   "tracking": {"utm_campaign": "spring_2024", "utm_source": "newsletter", "utm_medium": "email",'
      .. ' "utm_content": null, "utm_term": null},',
    '   "answers": [',
    table_concat(answers, ",\n"),
    '   ]',
    '  }',
    '}',
    '',
  }, "\n")
end

return {
  read_file = read_file,
  split_tabs = split_tabs,
  list_json = list_json,
  large_payload = large_payload,
}
