#include "runtime/metrics.hpp"

#include <gtest/gtest.h>

namespace lifeline::runtime {
namespace {

TEST(SumPrometheusTexts, SumsSamplesBySeriesAndKeepsCommentsOnce) {
    const std::string a =
        "# HELP lifeline_connections_open Open.\n# TYPE lifeline_connections_open gauge\n"
        "lifeline_connections_open 10\n"
        "lifeline_closed_total{reason=\"heartbeat_timeout\"} 2\n"
        "lifeline_loop_lag_max_seconds 0.004\n";
    const std::string b =
        "# HELP lifeline_connections_open Open.\n# TYPE lifeline_connections_open gauge\n"
        "lifeline_connections_open 5\n"
        "lifeline_closed_total{reason=\"heartbeat_timeout\"} 3\n"
        "lifeline_closed_total{reason=\"peer_closed\"} 1\n"
        "lifeline_loop_lag_max_seconds 0.25\n"
        "not a sample line\n";
    const std::string sum = sum_prometheus_texts({a, b});
    EXPECT_NE(sum.find("lifeline_connections_open 15\n"), std::string::npos) << sum;
    EXPECT_NE(sum.find("lifeline_closed_total{reason=\"heartbeat_timeout\"} 5\n"), std::string::npos) << sum;
    EXPECT_NE(sum.find("lifeline_closed_total{reason=\"peer_closed\"} 1\n"), std::string::npos) << sum;
    EXPECT_NE(sum.find("lifeline_loop_lag_max_seconds 0.25\n"), std::string::npos) << "a maximum is not summed";
    EXPECT_EQ(sum.find("# HELP lifeline_connections_open"), sum.rfind("# HELP lifeline_connections_open"));
    EXPECT_EQ(sum.find("not a sample"), std::string::npos);
}

TEST(SumPrometheusTexts, NothingToSumIsEmpty) { EXPECT_EQ(sum_prometheus_texts({}), ""); }

}  // namespace
}  // namespace lifeline::runtime
