// imgsearch: search folders of images by what they show.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "commands.h"
#include "imgsearch/path_display.h"

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

namespace {

// The folder `flag` (the option `flag_name`) names, pulled with progress shown when `fetch` allows.
Result<std::string> ModelDirFor(const std::string& flag, const char* flag_name, const ModelFetch& fetch) {
  ResolveOptions resolve;
  resolve.pull_if_missing = fetch.pull_if_missing;
  resolve.offline = fetch.offline;
  resolve.pull.on_progress = PullProgressPrinter();
  resolve.flag_name = flag_name;
  return ResolveModel(flag, resolve);
}

}  // namespace

void AddPrecisionFlag(CLI::App* app, std::string* precision) {
  app->add_option("--precision", *precision,
                  "fp32 (exact: fp32 math, full decode), bf16 (bfloat16 GEMMs, within cosine 0.999 of fp32; needs "
                  "AVX512_BF16 or AMX), auto (bf16 where the CPU has it natively, else fp32; JPEGs decoded at the "
                  "DCT scale that keeps twice the model's input) or int8 (int8 transformer weights, fastest, within "
                  "cosine 0.99; check yours with `imgsearch model check`)")
      ->capture_default_str();
}

Result<ModelOptions> ModelOptionsFor(const std::string& precision, int threads) {
  ModelOptions options;
  ASSIGN_OR_RETURN(options.precision, ParsePrecision(precision));
  options.n_threads = threads;
  return options;
}

Result<std::unique_ptr<ClipModel>> LoadModel(const std::string& flag, const ModelOptions& options,
                                             const ModelFetch& fetch) {
  ASSIGN_OR_RETURN(const std::string dir, ModelDirFor(flag, "--model", fetch));
  return ClipModel::Load(dir, options);
}

Result<std::unique_ptr<TextModel>> LoadTextModel(const std::string& flag, const ClipModel& image_model,
                                                 const ModelFetch& fetch) {
  ASSIGN_OR_RETURN(const std::string dir, ModelDirFor(flag, "--text-model", fetch));
  ASSIGN_OR_RETURN(std::unique_ptr<TextModel> text, TextModel::Load(dir));
  if (text->embedding_dim() != image_model.embedding_dim()) {
    return Status::InvalidArgument("--text-model " + flag + " maps text to " + std::to_string(text->embedding_dim()) +
                                   " dimensions, but the image model " + image_model.info().source + " has " +
                                   std::to_string(image_model.embedding_dim()) +
                                   ": use a text model trained against that image model");
  }
  return text;
}

namespace {

// Edits (insertions, deletions, substitutions, swaps of neighbours) from `a` to `b`.
size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// "unknown command "serach"; did you mean "search"?" for a first word that names no command.
std::string UnknownCommand(const CLI::App& app, const std::string& word) {
  std::string best;
  size_t best_distance = 3;  // farther than two edits is no suggestion
  for (const CLI::App* sub : app.get_subcommands({})) {
    const std::string& name = sub->get_name();
    const size_t distance = name.starts_with(word) ? 1 : EditDistance(word, name);
    if (distance < best_distance) {
      best = name;
      best_distance = distance;
    }
  }
  std::string message = "unknown command \"" + ForTerminal(word) + "\"";
  if (!best.empty()) message += "; did you mean \"" + best + "\"?";
  return message + " (imgsearch --help lists the commands)";
}

int Main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("imgsearch");
  logger->set_pattern("%^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);

  CLI::App app{"imgsearch: search folders of images by what they show", "imgsearch"};
  app.require_subcommand(1);
  app.set_version_flag("-V,--version", std::string("imgsearch ") + IMGSEARCH_VERSION);
  app.footer(
      "Start with: imgsearch serve --db DIR --watch FOLDER (then open the address it prints), or "
      "imgsearch index --db DIR FOLDER and imgsearch search --db DIR \"words\". COMMAND --help tells more.\n\n"
      "Exit codes: 0 done; 1 some inputs failed (each named), the rest done; 2 the request is wrong (a bad flag or "
      "value, something named that does not exist, a collection built with another model); 3 a bug in imgsearch; "
      "4 reading or writing failed (I/O error, damaged data, a limit reached); 5 busy or unreachable, retrying may "
      "help (a database or network down, a collection another process is writing, a port in use).");
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

  if (argc < 2) {
    std::fputs(app.help().c_str(), stderr);
    return kExitUsage;
  }
  if (const std::string first = argv[1]; !first.starts_with("-")) {
    const auto names = app.get_subcommands({});
    if (std::none_of(names.begin(), names.end(), [&](const CLI::App* sub) { return sub->check_name(first); })) {
      PrintError(UnknownCommand(app, first));
      return kExitUsage;
    }
  }
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
