// tinyasr: the serializers live beside the stream they extend (see io.h).
#ifndef TINYASR_TVM_SUPPORT_SERIALIZER_H_
#define TINYASR_TVM_SUPPORT_SERIALIZER_H_

#include <tvm/support/io.h>

#endif  // TINYASR_TVM_SUPPORT_SERIALIZER_H_
