// keyward's one native function: glibc's malloc_trim(0), for src/memory-trim.ts.
//
// The few Node-API functions used are declared here rather than taken from
// node_api.h: Node-API is a stable C ABI, and without the header this builds
// with any C compiler, whichever Node (or none of its headers) is installed.
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h> // defines __GLIBC__ on glibc (the compiler's own headers above do not)
#ifdef __GLIBC__
#include <malloc.h>
#endif

typedef struct napi_env__* napi_env;
typedef struct napi_value__* napi_value;
typedef struct napi_callback_info__* napi_callback_info;
typedef int napi_status;
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);
#define NAPI_AUTO_LENGTH ((size_t)-1)

extern napi_status napi_create_function(napi_env env, const char* name, size_t length, napi_callback cb, void* data, napi_value* result);
extern napi_status napi_set_named_property(napi_env env, napi_value object, const char* name, napi_value value);
extern napi_status napi_get_boolean(napi_env env, bool value, napi_value* result);

// trim(): true when memory was returned to the operating system.
static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  bool released = false;
#ifdef __GLIBC__
  released = malloc_trim(0) != 0;
#endif
  napi_value result;
  if (napi_get_boolean(env, released, &result) != 0) return NULL;
  return result;
}

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "trim", NAPI_AUTO_LENGTH, trim, NULL, &fn) != 0) return NULL;
  if (napi_set_named_property(env, exports, "trim", fn) != 0) return NULL;
  return exports;
}
