// Boost.JSON and Boost.URL compiled into the app once, so no separate Boost libraries are needed.
#include <boost/json/src.hpp>
#include <boost/url/src.hpp>
