// The bad-input suite's table runner: every public entry point with the bad inputs it must
// reject, each a row { entry, input, names, call, state }.
//
// A row passes when `call` throws tformer::Error (not another exception, not nothing) whose
// message contains `names` (the parameter it must name), and, when `state` is given, `state()`
// returns the same before and after the call (a rejected call changes nothing). The program
// prints its counts at exit: entry points, inputs, and how many raised the expected Error.
//
// BAD_INPUT_ROW=n runs only the n-th row of the program (0-based, in the order run() meets them)
// and prints its outcome: to probe a build where a row may crash or hang, one process per row
// (scripts/probe-bad-input).
#pragma once

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "tformer/core/error.hpp"
#include "tformer/core/views.hpp"

namespace bad_input {

// Values the tables reuse.
inline constexpr tformer::index huge = tformer::index(1) << 62;
inline constexpr tformer::index max_index = std::numeric_limits<tformer::index>::max();
inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
inline constexpr float kInf = std::numeric_limits<float>::infinity();

// v, hidden from the optimiser: a size that makes a check throw is then not also propagated
// into the loop after the check (GCC warns of the undefined behaviour it would have).
inline tformer::index opaque(tformer::index v) {
  asm volatile("" : "+r"(v));
  return v;
}

// Whether the kernel refuses allocations past its memory (overcommit heuristic or never), so
// that asking for more than the machine has fails instead of succeeding lazily and being killed
// when touched: rows that need a failing allocation run only then.
inline bool overcommit_refuses() {
  std::ifstream f("/proc/sys/vm/overcommit_memory");
  int mode = -1;
  return f >> mode && mode != 1;
}

// The bytes of a buffer, so that a row can state that a rejected call wrote nothing.
inline std::string contents(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

struct Row {
  std::string entry;  // "KVCache::advance"
  std::string input;  // "tokens = INT64_MAX"
  std::string names;  // a part of the message: the parameter's name
  std::function<void()> call;
  std::function<std::string()> state = {};  // the object's observable state, or empty
};

// Counts over the whole program, printed at exit.
struct Tally {
  std::set<std::string> entries;
  int inputs = 0, errors = 0;
  long rows = 0;  // rows met, run or not (BAD_INPUT_ROW)
  ~Tally() {
    std::printf("bad_input: %zu entry points, %d bad inputs, %d raised tformer::Error naming the "
                "parameter with no state change (%ld rows in the table)\n",
                entries.size(), inputs, errors, rows);
  }
};
inline Tally& tally() {
  static Tally t;
  return t;
}

// Runs the rows; each failure is reported with its entry point and input.
inline void run(const std::vector<Row>& rows) {
  static long next_row = 0;
  static const char* only = std::getenv("BAD_INPUT_ROW");
  for (const Row& row : rows) {
    const long number = next_row++;
    tally().rows = next_row;
    if (only != nullptr && std::atol(only) != number) continue;
    tally().entries.insert(row.entry);
    ++tally().inputs;
    INFO(row.entry << " with " << row.input);
    const std::string before = row.state ? row.state() : std::string();
    std::string outcome;
    try {
      row.call();
      outcome = "returned normally";
    } catch (const tformer::Error& e) {
      const std::string message = e.what();
      if (message.find(row.names) == std::string::npos)
        outcome = "tformer::Error without \"" + row.names + "\": " + message;
    } catch (const std::exception& e) {
      outcome = std::string("escaped non-tformer exception: ") + e.what();
    } catch (...) {
      outcome = "escaped an unknown exception";
    }
    if (outcome.empty() && row.state && row.state() != before)
      outcome = "changed state before failing";
    if (only != nullptr)
      std::printf("row %ld: %s with %s: %s\n", number, row.entry.c_str(), row.input.c_str(),
                  outcome.empty() ? "ok" : outcome.c_str());
    CHECK(outcome == "");
    if (outcome.empty()) ++tally().errors;
  }
}

}  // namespace bad_input
