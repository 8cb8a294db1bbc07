#include "base/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace imgsearch {

namespace {

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string message = what + " " + path + ": " + std::strerror(err);
  if (err == ENOENT) return Status::NotFound(message);
  return Status::IoError(message);
}

// Opens `path` read-only and checks that it is a regular file; returns the fd and its size.
Status OpenRegular(const std::string& path, int* fd_out, size_t* size_out) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoStatus("cannot open", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("cannot stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(path + " is not a regular file");
  }
  *fd_out = fd;
  *size_out = static_cast<size_t>(st.st_size);
  return Status::Ok();
}

}  // namespace

namespace {

// Reads `size` bytes (fewer if the file shrank meanwhile) from the start of `fd`, and closes it.
Result<std::vector<uint8_t>> ReadAndClose(int fd, const std::string& path, size_t size) {
  std::vector<uint8_t> bytes(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::read(fd, bytes.data() + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoStatus("cannot read", path, err);
    }
    if (n == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  bytes.resize(done);
  return bytes;
}

}  // namespace

Result<std::vector<uint8_t>> ReadFileBytes(const std::string& path, size_t max_bytes) {
  int fd = -1;
  size_t size = 0;
  RETURN_IF_ERROR(OpenRegular(path, &fd, &size));
  if (size > max_bytes) {
    ::close(fd);
    return Status::ResourceExhausted(path + " is " + std::to_string(size) + " bytes, more than the limit of " +
                                     std::to_string(max_bytes));
  }
  return ReadAndClose(fd, path, size);
}

Result<RegularFile> RegularFile::Open(const std::string& path) {
  int fd = -1;
  size_t size = 0;
  RETURN_IF_ERROR(OpenRegular(path, &fd, &size));
  return RegularFile(fd, size, path);
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::vector<uint8_t>> RegularFile::ReadAt(uint64_t offset, size_t n) const {
  std::vector<uint8_t> bytes(n);
  size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd_, bytes.data() + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoStatus("cannot read", path_, errno);
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  bytes.resize(done);
  return bytes;
}

Result<std::string> ReadFileText(const std::string& path, size_t max_bytes) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileBytes(path, max_bytes));
  return std::string(bytes.begin(), bytes.end());
}

Result<MappedFile> MappedFile::Open(const std::string& path) {
  int fd = -1;
  size_t size = 0;
  RETURN_IF_ERROR(OpenRegular(path, &fd, &size));
  if (size == 0) {
    ::close(fd);
    return MappedFile(path, nullptr, 0);
  }
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  if (addr == MAP_FAILED) return ErrnoStatus("cannot map", path, err);
  return MappedFile(path, static_cast<const uint8_t*>(addr), size);
}

void MappedFile::Release(const void* p, size_t n_bytes) const {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(p) + n_bytes) / page * page;
  if (begin < end) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace imgsearch
