#include "log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace vote {
namespace {

// %j: the message as the inside of a JSON string.
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (const char ch : msg.payload) {
      switch (ch) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(ch) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", ch);
            dest.append(std::string_view(buf));
          } else {
            dest.push_back(ch);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonEscapedMessage>(); }
};

constexpr const char* kTime = R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",)";

}  // namespace

void SetUpLogging(const std::string& level) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto main = std::make_shared<spdlog::logger>("vote", sink);
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<JsonEscapedMessage>('j').set_pattern(std::string(kTime) + R"("msg":"%j"})");
  main->set_formatter(std::move(formatter));
  main->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(main);

  // Formatters live on sinks, so the access logger needs a sink of its own.
  auto access = std::make_shared<spdlog::logger>("access", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  access->set_formatter(
      std::make_unique<spdlog::pattern_formatter>(std::string(kTime) + "%v}", spdlog::pattern_time_type::utc));
  access->set_level(spdlog::level::info);
  spdlog::drop("access");
  spdlog::register_logger(access);
}

}  // namespace vote
