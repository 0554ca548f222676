// Writing the report to disk: the only part of the report that touches the file system.
#include "lab/report.hpp"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <system_error>

#include "net/sysctl.hpp"  // write_file_atomically

namespace lifeline::lab {

Result<void> write_report(const LabRun& run, const std::string& directory) {
    std::error_code ec;
    std::filesystem::create_directories(directory, ec);
    if (ec) return system_error("create report directory " + directory, ec.value());
    const std::filesystem::path dir(directory);
    // Messages and findings come from other processes; invalid UTF-8 is
    // replaced rather than allowed to throw.
    const std::string json_text = to_json(run).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (Result<void> written = net::write_file_atomically((dir / "lab.json").string(), json_text); !written)
        return written.error().with_context("write lab report");
    if (Result<void> written = net::write_file_atomically((dir / "lab.html").string(), render_html(run)); !written)
        return written.error().with_context("write lab report");
    return {};
}

}  // namespace lifeline::lab
