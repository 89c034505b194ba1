/*
 * The agent-startup benchmark's memory baseline: ONNX Runtime alone, in a C process with nothing else,
 * loading the same library and model as the agent with the same session settings, and running it the
 * way the agent's idle loop does (4 inferences a second for 5 s). Prints the resident set at each step
 * and, last, "idle-rss-kb N". Built by the benchmark with the C compiler and ONNX Runtime's own header.
 *
 * usage: ort-footprint LIBONNXRUNTIME MODEL INPUT_NAME D0,D1,... OUTPUT_NAME
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "onnxruntime_c_api.h"

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static const OrtApi *api;

static void check(OrtStatus *status, const char *what)
{
    if (status) {
        fprintf(stderr, "%s: %s\n", what, api->GetErrorMessage(status));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s LIBONNXRUNTIME MODEL INPUT_NAME D0,D1,... OUTPUT_NAME\n", argv[0]);
        return 2;
    }
    printf("start-rss-kb %ld\n", rss_kb());
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    const OrtApiBase *(*get_base)(void) = (const OrtApiBase *(*)(void))dlsym(lib, "OrtGetApiBase");
    api = get_base()->GetApi(ORT_API_VERSION);
    printf("dlopen-rss-kb %ld\n", rss_kb());

    OrtEnv *env;
    check(api->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "footprint", &env), "CreateEnv");
    printf("env-rss-kb %ld\n", rss_kb());
    OrtSessionOptions *options;
    check(api->CreateSessionOptions(&options), "CreateSessionOptions");
    check(api->SetIntraOpNumThreads(options, 0), "SetIntraOpNumThreads");
    check(api->SetInterOpNumThreads(options, 1), "SetInterOpNumThreads");
    check(api->SetSessionExecutionMode(options, ORT_SEQUENTIAL), "SetSessionExecutionMode");
    check(api->SetSessionGraphOptimizationLevel(options, ORT_ENABLE_ALL), "SetSessionGraphOptimizationLevel");
    OrtSession *session;
    check(api->CreateSession(env, argv[2], options, &session), "CreateSession");
    printf("session-rss-kb %ld\n", rss_kb());

    int64_t shape[8];
    size_t rank = 0, count = 1;
    for (char *dim = strtok(argv[4], ","); dim && rank < 8; dim = strtok(NULL, ","))
        count *= (size_t)(shape[rank++] = atoll(dim));
    float *data = calloc(count, sizeof(float));
    for (size_t i = 0; i < count; i++)
        data[i] = (float)(i % 7) * 0.25f;
    OrtMemoryInfo *memory;
    check(api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &memory), "CreateCpuMemoryInfo");
    OrtValue *input = NULL;
    check(api->CreateTensorWithDataAsOrtValue(memory, data, count * sizeof(float), shape, rank,
                                              ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &input), "CreateTensor");
    const char *inputs[] = {argv[3]};
    const char *outputs[] = {argv[5]};
    for (int i = 0; i < 20; i++) {
        OrtValue *output = NULL;
        check(api->Run(session, NULL, inputs, (const OrtValue *const *)&input, 1, outputs, 1, &output), "Run");
        api->ReleaseValue(output);
        struct timespec quarter = {0, 250 * 1000 * 1000};
        nanosleep(&quarter, NULL);
    }
    printf("idle-rss-kb %ld\n", rss_kb());
    return 0;
}
