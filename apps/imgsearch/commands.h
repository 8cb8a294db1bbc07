// Subcommands of the imgsearch binary. Each Add*Command registers its flags on `root` and returns
// the function that runs it once the command line is parsed; that function returns the exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>

#include "imgsearch/clip.h"
#include "imgsearch/hub.h"
#include "imgsearch/status.h"
#include "imgsearch/text_model.h"

namespace imgsearch::cli {

// Exit codes, the same for every command (the README lists them). A failure's code follows from its
// Status (ExitCodeOf), so a command never picks one by hand.
constexpr int kExitOk = 0;
constexpr int kExitSomeFailed = 1;   // some inputs failed (each named on stderr); the others were processed
constexpr int kExitUsage = 2;        // the request is wrong: a bad flag or value, something named that does not
                                     // exist (a file, a collection, a model, an id), another model's collection
constexpr int kExitInternal = 3;     // a bug in imgsearch
constexpr int kExitData = 4;         // reading or writing failed: an I/O error, damaged data, a limit reached
constexpr int kExitUnavailable = 5;  // busy or unreachable, retrying may help: a database or network down, a
                                     // collection another process holds, a port in use

// The exit code for a failure: kInvalidArgument, kNotFound, kUnsupported, kPermissionDenied → 2;
// kInternal → 3; kIoError, kCorruption, kResourceExhausted → 4; kUnavailable → 5.
int ExitCodeOf(const Status& status);

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

// --precision fp32|bf16|auto|int8, its value kept in *precision.
void AddPrecisionFlag(CLI::App* app, std::string* precision);

// The model options --precision and --threads ask for.
Result<ModelOptions> ModelOptionsFor(const std::string& precision, int threads);

// Loads the model --model names (a folder or a hub name), else $IMGSEARCH_MODEL, else the default
// model from the cache (see ResolveModel).
Result<std::unique_ptr<ClipModel>> LoadModel(const std::string& flag, const ModelOptions& options = {},
                                             const ModelFetch& fetch = {});

// --text-model (a folder or a hub name): a text tower into `image_model`'s space, refused when its
// dimension differs.
Result<std::unique_ptr<TextModel>> LoadTextModel(const std::string& flag, const ClipModel& image_model,
                                                 const ModelFetch& fetch = {});

// Prints download progress on stderr (a bar on a terminal, a line every few seconds otherwise).
std::function<void(const PullProgress&)> PullProgressPrinter();

// Prints the status as one line on stderr and returns its exit code (ExitCodeOf).
int ReportError(const Status& status);

// Prints "imgsearch: <message>" on stderr.
void PrintError(const std::string& message);

}  // namespace imgsearch::cli
