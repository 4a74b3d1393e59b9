#include "text_parser.h"

#include <charconv>
#include <deque>
#include <cmath>
#include <limits>
#include <array>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "common/printable.h"
#include "common/strings.h"

namespace kvlb::metrics {
namespace {

// Character classes as one table lookup each (the parser's inner loops).
enum : uint8_t { kNameStart = 1, kNameChar = 2, kLabelStart = 4, kLabelChar = 8 };
constexpr std::array<uint8_t, 256> make_classes() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    uint8_t v = 0;
    if (alpha || c == ':') v |= kNameStart | kNameChar;
    if (digit) v |= kNameChar | kLabelChar;
    if (alpha) v |= kLabelStart | kLabelChar;
    t[static_cast<size_t>(c)] = v;
  }
  return t;
}
constexpr auto kClasses = make_classes();
inline bool has_class(char c, uint8_t cls) {
  return kClasses[static_cast<unsigned char>(c)] & cls;
}
inline bool is_name_start(char c) {
  return has_class(c, kNameStart);
}
inline bool is_label_start(char c) {
  return has_class(c, kLabelStart);
}
bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

// A cursor over one line.
struct Cursor {
  std::string_view s;
  size_t i = 0;
  bool done() const { return i >= s.size(); }
  char peek() const { return s[i]; }
  void skip_blanks() {
    while (!done() && is_blank(s[i])) ++i;
  }
  std::string_view take_class(uint8_t cls) {
    size_t start = i;
    while (!done() && has_class(s[i], cls)) ++i;
    return s.substr(start, i - start);
  }
  std::string_view take_token() {
    size_t start = i;
    while (!done() && !is_blank(s[i])) ++i;
    return s.substr(start, i - start);
  }
};

std::optional<MetricType> parse_type(std::string_view t) {
  if (t == "counter") return MetricType::Counter;
  if (t == "gauge") return MetricType::Gauge;
  if (t == "histogram") return MetricType::Histogram;
  if (t == "summary") return MetricType::Summary;
  if (t == "untyped" || t == "unknown") return MetricType::Untyped;
  return std::nullopt;
}

// Families declared by # TYPE lines. Samples follow their family's TYPE line, so
// the last one declared answers almost every lookup; the rest is a hash lookup
// (a page built to be slow, with a hundred thousand families, stays linear).
// The table is reused from page to page: clear() keeps its buckets.
struct Families {
  std::unordered_map<std::string_view, MetricType> by_name;
  std::string_view last_name;
  MetricType last_type = MetricType::Untyped;
  void clear() {
    by_name.clear();
    last_name = {};
  }
  size_t size() const { return by_name.size(); }
  // False when the family was declared already.
  bool add(std::string_view name, MetricType t) {
    if (!by_name.emplace(name, t).second) return false;
    last_name = name;
    last_type = t;
    return true;
  }
  const MetricType* find(std::string_view name) const {
    if (!last_name.empty() && last_name == name) return &last_type;
    auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : &it->second;
  }
  // The type of the family a sample belongs to (histogram, summary and counter
  // series carry suffixes).
  MetricType type_of(std::string_view name) const {
    if (by_name.empty()) return MetricType::Untyped;
    if (const auto* t = find(name)) return *t;
    for (std::string_view suffix : {"_bucket", "_sum", "_count", "_total", "_created"}) {
      if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix) {
        if (const auto* t = find(name.substr(0, name.size() - suffix.size()))) return *t;
      }
    }
    return MetricType::Untyped;
  }
};

// The first '"' or '\\' in s from pos, or npos (string_view::find_first_of
// calls memchr per input character).
size_t find_quote_or_backslash(std::string_view s, size_t pos) {
  for (size_t i = pos; i < s.size(); ++i)
    if (s[i] == '"' || s[i] == '\\') return i;
  return std::string_view::npos;
}

// Scratch space reused across calls on a thread: no allocation per page.
struct Scratch {
  Families families;
  Sample sample;
  std::deque<std::string> unescaped;  // views into its strings survive growth
};

}  // namespace

const std::string_view* Sample::label(std::string_view n) const {
  for (const auto& l : labels)
    if (l.name == n) return &l.value;
  return nullptr;
}

std::string ParseError::to_string() const {
  return fmt::format("line {}: {}", line, message);
}

std::optional<double> parse_value(std::string_view t) {
  if (t.empty()) return std::nullopt;
  if (iequals(t, "nan")) return std::numeric_limits<double>::quiet_NaN();
  if (iequals(t, "+inf") || iequals(t, "inf")) return std::numeric_limits<double>::infinity();
  if (iequals(t, "-inf")) return -std::numeric_limits<double>::infinity();
  std::string_view body = t;
  if (body.front() == '+') {
    body.remove_prefix(1);
    if (body.empty() || body.front() == '+' || body.front() == '-') return std::nullopt;
  }
  double v = 0;
  auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), v);
  if (ptr != body.data() + body.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) {
    // from_chars reports overflow instead of returning +-Inf / 0 as strtod does.
    bool neg = body.front() == '-';
    auto e = body.find_first_of("eE");
    bool tiny = e != std::string_view::npos && e + 1 < body.size() && body[e + 1] == '-';
    return tiny ? 0.0 : (neg ? -HUGE_VAL : HUGE_VAL);
  }
  if (ec != std::errc()) return std::nullopt;
  return v;
}

std::optional<ParseError> parse_text(std::string_view text, const SampleCallback& on_sample,
                                     const ParseLimits& limits) {
  thread_local Scratch scratch;
  auto& types = scratch.families;
  auto& sample = scratch.sample;
  auto& unescaped = scratch.unescaped;
  types.clear();
  size_t unescaped_used = 0;
  size_t line_no = 0, samples = 0, pos = 0;
  auto fail = [&](std::string msg) { return ParseError{line_no, std::move(msg)}; };

  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > limits.max_line_bytes)
      return fail(fmt::format("line longer than {} bytes", limits.max_line_bytes));

    Cursor c{line};
    c.skip_blanks();
    if (c.done()) continue;

    if (c.peek() == '#') {
      ++c.i;
      c.skip_blanks();
      auto keyword = c.take_token();
      if (keyword != "HELP" && keyword != "TYPE") continue;  // a plain comment
      c.skip_blanks();
      auto name = c.take_class(kNameChar);
      if (name.empty() || !is_name_start(name.front()))
        return fail(fmt::format("# {} without a valid metric name", keyword));
      if (keyword == "TYPE") {
        c.skip_blanks();
        auto t = parse_type(c.take_token());
        if (!t) return fail(fmt::format("unknown metric type for {}", name));
        if (types.size() >= limits.max_families)
          return fail(fmt::format("more than {} metric families", limits.max_families));
        if (!types.add(name, *t)) return fail(fmt::format("second # TYPE line for {}", name));
      }
      continue;
    }

    if (!is_name_start(c.peek())) return fail("expected a metric name");
    sample.name = c.take_class(kNameChar);
    sample.labels.clear();
    unescaped_used = 0;
    sample.timestamp_ms.reset();
    c.skip_blanks();
    if (!c.done() && c.peek() == '{') {
      ++c.i;
      for (;;) {
        c.skip_blanks();
        if (c.done()) return fail("unterminated label set");
        if (c.peek() == '}') {
          ++c.i;
          break;
        }
        if (!is_label_start(c.peek())) return fail("expected a label name");
        Label label{c.take_class(kLabelChar), {}};
        c.skip_blanks();
        if (c.done() || c.peek() != '=')
          return fail(fmt::format("expected '=' after label {}", label.name));
        ++c.i;
        c.skip_blanks();
        if (c.done() || c.peek() != '"')
          return fail(fmt::format("expected '\"' for label {}", label.name));
        ++c.i;
        // The common case has no escapes: the value is a view into the line.
        const size_t vstart = c.i;
        size_t q = find_quote_or_backslash(line, vstart);
        if (q == std::string_view::npos)
          return fail(fmt::format("unterminated value of label {}", label.name));
        if (line[q] == '"') {
          label.value = line.substr(vstart, q - vstart);
          c.i = q + 1;
        } else {
          if (unescaped_used == unescaped.size()) unescaped.emplace_back();
          std::string& buf = unescaped[unescaped_used++];
          buf.assign(line.substr(vstart, q - vstart));
          c.i = q;
          bool closed = false;
          while (!c.done()) {
            char ch = line[c.i++];
            if (ch == '"') {
              closed = true;
              break;
            }
            if (ch == '\\') {
              if (c.done()) break;
              char e = line[c.i++];
              if (e == 'n')
                buf.push_back('\n');
              else if (e == '\\' || e == '"')
                buf.push_back(e);
              else
                return fail(fmt::format("invalid escape \\{} in label {}",
                                        printable(std::string_view(&e, 1)), label.name));
            } else {
              buf.push_back(ch);
            }
          }
          if (!closed) return fail(fmt::format("unterminated value of label {}", label.name));
          label.value = buf;
        }
        for (const auto& l : sample.labels)
          if (l.name == label.name) return fail(fmt::format("duplicate label {}", label.name));
        sample.labels.push_back(std::move(label));
        if (sample.labels.size() > limits.max_labels)
          return fail(fmt::format("more than {} labels", limits.max_labels));
        c.skip_blanks();
        if (!c.done() && c.peek() == ',')
          ++c.i;
        else if (c.done() || c.peek() != '}')
          return fail("expected ',' or '}' in label set");
      }
    }
    c.skip_blanks();
    auto value_text = c.take_token();
    auto value = parse_value(value_text);
    if (!value)
      return fail(fmt::format("invalid value {} for {}", quoted(value_text, 64), sample.name));
    sample.value = *value;
    c.skip_blanks();
    if (!c.done()) {
      auto ts_text = c.take_token();
      int64_t ts = 0;
      auto [ptr, ec] = std::from_chars(ts_text.data(), ts_text.data() + ts_text.size(), ts);
      if (ec != std::errc() || ptr != ts_text.data() + ts_text.size())
        return fail(fmt::format("invalid timestamp {}", quoted(ts_text, 64)));
      sample.timestamp_ms = ts;
      c.skip_blanks();
      if (!c.done()) return fail("unexpected text after the timestamp");
    }
    sample.type = types.type_of(sample.name);
    if (sample.type == MetricType::Histogram && sample.name.size() > 7 &&
        sample.name.substr(sample.name.size() - 7) == "_bucket" && !sample.label("le"))
      return fail(fmt::format("histogram bucket {} without an le label", sample.name));
    if (++samples > limits.max_samples)
      return fail(fmt::format("more than {} samples", limits.max_samples));
    on_sample(sample);
  }
  return std::nullopt;
}

}  // namespace kvlb::metrics
