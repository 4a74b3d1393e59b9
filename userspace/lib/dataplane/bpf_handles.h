// bpf_handles.h - RAII owners for libbpf objects.
#pragma once

#include <bpf/libbpf.h>

#include <memory>

namespace kvlb::bpf {

struct LinkDeleter {
  // Closes our fd only: a pinned link stays attached through its pin.
  void operator()(bpf_link* l) const { bpf_link__destroy(l); }
};
using LinkPtr = std::unique_ptr<bpf_link, LinkDeleter>;

struct RingBufferDeleter {
  void operator()(ring_buffer* r) const { ring_buffer__free(r); }
};
using RingBufferPtr = std::unique_ptr<ring_buffer, RingBufferDeleter>;

// Owner of a bpftool-generated skeleton (`Destroy` is its __destroy function).
template <typename Skel, void (*Destroy)(Skel*)>
struct SkelDeleter {
  void operator()(Skel* s) const { Destroy(s); }
};
template <typename Skel, void (*Destroy)(Skel*)>
using SkelPtr = std::unique_ptr<Skel, SkelDeleter<Skel, Destroy>>;

}  // namespace kvlb::bpf
