# Cross-compiles for 64-bit Arm Linux on a Debian host, and runs what it
# builds under qemu-user:
#   cmake -S . -B build/aarch64 \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
# (scripts/test.sh's aarch64 build). scripts/deps.sh installs what it needs:
# g++-aarch64-linux-gnu (the compiler, and the arm64 C library in
# /usr/aarch64-linux-gnu), qemu-user (qemu-aarch64), and arm64 libraries
# through Debian multiarch (dpkg --add-architecture arm64, then e.g.
# libgtest-dev:arm64, into /usr/lib/aarch64-linux-gnu).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# What CMake would detect from the compiler anyway; said here so every
# find_* call looks in lib/aarch64-linux-gnu (the multiarch folder) and never
# in the host's lib/x86_64-linux-gnu.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Where the target's files are: the cross C library under
# /usr/aarch64-linux-gnu, and, with Debian multiarch, arm64 libraries in
# /usr/lib/aarch64-linux-gnu beside architecture-independent headers and
# CMake packages (/usr/include/eigen3, /usr/share/eigen3/cmake, dlpack,
# CLI11) that both architectures share. So libraries, headers and packages
# are looked for under the find root and then in the host's own prefixes
# (BOTH), where CMAKE_LIBRARY_ARCHITECTURE picks the arm64 folder; programs
# (qemu, mpicxx, python) are the host's (NEVER).
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# ctest, and gtest_discover_tests (which runs each test binary at build time
# to list its tests), start target programs through this. -L: where qemu
# finds the arm64 dynamic loader and shared libraries (libc, libstdc++).
# Give -DCMAKE_CROSSCOMPILING_EMULATOR=... to use another.
if(NOT DEFINED CMAKE_CROSSCOMPILING_EMULATOR)
  find_program(PDROP_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static
               DOC "qemu-user for aarch64 (Debian: qemu-user)")
  if(PDROP_QEMU_AARCH64)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${PDROP_QEMU_AARCH64};-L;/usr/aarch64-linux-gnu")
  else()
    message(WARNING "qemu-aarch64 not found (apt-get install qemu-user, or scripts/deps.sh): "
            "the aarch64 programs build but ctest cannot run them")
  endif()
endif()
