// imgsearch: search folders of images by what they show.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "commands.h"

namespace imgsearch::cli {

void PrintError(const std::string& message) { std::fprintf(stderr, "imgsearch: %s\n", message.c_str()); }

int ExitCodeOf(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return kExitOk;
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kUnsupported:
    case StatusCode::kPermissionDenied: return kExitUsage;
    case StatusCode::kInternal: return kExitInternal;
    case StatusCode::kIoError:
    case StatusCode::kCorruption:
    case StatusCode::kResourceExhausted: return kExitData;
    case StatusCode::kUnavailable: return kExitUnavailable;
  }
  return kExitInternal;
}

int ReportError(const Status& status) {
  PrintError(status.ToString());
  return ExitCodeOf(status);
}

Result<std::unique_ptr<ClipModel>> LoadModel(const std::string& flag, const ModelOptions& options,
                                             const ModelFetch& fetch) {
  ResolveOptions resolve;
  resolve.pull_if_missing = fetch.pull_if_missing;
  resolve.offline = fetch.offline;
  resolve.pull.on_progress = PullProgressPrinter();
  ASSIGN_OR_RETURN(const std::string dir, ResolveModel(flag, resolve));
  return ClipModel::Load(dir, options);
}

namespace {

int Main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("imgsearch");
  logger->set_pattern("%^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);

  CLI::App app{"imgsearch: search folders of images by what they show"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("imgsearch ") + IMGSEARCH_VERSION);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "log what happens (the kernels in use, timings)");
  std::map<CLI::App*, RunFn> commands;
  auto add = [&](RunFn run) { commands[app.get_subcommands({}).back()] = std::move(run); };
  add(AddEmbedCommand(app));
  add(AddTokenizeCommand(app));
  add(AddPreprocessCommand(app));
  add(AddModelCommand(app));
  add(AddIndexCommand(app));
  add(AddWatchCommand(app));
  add(AddReindexCommand(app));
  add(AddBenchCommand(app));
  add(AddSearchCommand(app));
  add(AddStatsCommand(app));
  add(AddListCommand(app));
  add(AddDuplicatesCommand(app));
  add(AddServeCommand(app));
  add(AddWorkerCommand(app));
  add(AddMigrateCommand(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (verbose) spdlog::set_level(spdlog::level::info);
  for (CLI::App* sub : app.get_subcommands()) {
    auto it = commands.find(sub);
    if (it != commands.end()) return it->second();
  }
  PrintError("no command given (try --help)");
  return kExitUsage;
}

}  // namespace
}  // namespace imgsearch::cli

int main(int argc, char** argv) {
  try {
    return imgsearch::cli::Main(argc, argv);
  } catch (const std::exception& e) {
    imgsearch::cli::PrintError(std::string("internal error: ") + e.what());
    return imgsearch::cli::kExitInternal;
  }
}
