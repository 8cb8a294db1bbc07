// Subcommands of the imgsearch binary. Each Add*Command registers its flags on `root` and returns
// the function that runs it once the command line is parsed; that function returns the exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>

#include "imgsearch/clip.h"
#include "imgsearch/models.h"
#include "imgsearch/status.h"

namespace imgsearch::cli {

// Exit codes shared by every command.
constexpr int kExitOk = 0;
constexpr int kExitSomeFailed = 1;  // some inputs failed; the others were processed
constexpr int kExitUsage = 2;       // bad flags, or the model could not be loaded

using RunFn = std::function<int()>;

RunFn AddEmbedCommand(CLI::App& root);
RunFn AddTokenizeCommand(CLI::App& root);
RunFn AddPreprocessCommand(CLI::App& root);
RunFn AddModelCommand(CLI::App& root);
RunFn AddIndexCommand(CLI::App& root);
RunFn AddWatchCommand(CLI::App& root);
RunFn AddReindexCommand(CLI::App& root);
RunFn AddBenchCommand(CLI::App& root);
RunFn AddSearchCommand(CLI::App& root);
RunFn AddStatsCommand(CLI::App& root);
RunFn AddListCommand(CLI::App& root);
RunFn AddDuplicatesCommand(CLI::App& root);
RunFn AddServeCommand(CLI::App& root);
RunFn AddWorkerCommand(CLI::App& root);
RunFn AddMigrateCommand(CLI::App& root);

struct ModelFetch {
  bool pull_if_missing = false;  // download a named (or the default) model that is not cached
  bool offline = false;
};

// Loads the model --model names (a folder or a hub name), else $IMGSEARCH_MODEL, else the default
// model from the cache (see ResolveModel).
Result<std::unique_ptr<ClipModel>> LoadModel(const std::string& flag, const ModelOptions& options = {},
                                             const ModelFetch& fetch = {});

// Prints download progress on stderr (a bar on a terminal, a line every few seconds otherwise).
std::function<void(const PullProgress&)> PullProgressPrinter();

// Prints the status as one line on stderr and returns `exit_code`.
int ReportError(const Status& status, int exit_code);

// Prints "imgsearch: <message>" on stderr.
void PrintError(const std::string& message);

}  // namespace imgsearch::cli
